"""Validation videos held out of a training split, chosen by video id.

A benchmark without a labelled validation split (Ref-YouTube-VOS, A2D-Sentences) validates on training videos
that training never sees. Derived split names address the two parts of any split ``<base>``:

    <base>-fit                  the videos trained on: <base> minus the held-out videos
    <base>-holdout              the held-out videos: 10% of <base>
    <base>-fit-20pct, <base>-holdout-20pct    the same with 20% held out (any whole percent from 1 to 99)

A video is held out when the SHA-256 of its id, read as a number in [0, 1), is below the held-out share: the
assignment depends on the id alone, so adding videos never moves the others, and the videos held out at 10% are
among those held out at 20%. The share is part of the name, not a configuration key, because every stage
addresses a split by its name alone (shards and embeddings live under ``<folder>/<split name>``): parts cut at
different shares never share a folder, and the shard stage needs nothing but the name.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from groprompt.data.records import Video
from groprompt.errors import DataError

FIT = "fit"
HOLDOUT = "holdout"
DEFAULT_HOLDOUT_PERCENT = 10
_DERIVED = re.compile(rf"(?P<base>.+)-(?P<part>{FIT}|{HOLDOUT})(?:-(?P<percent>\d+)pct)?")


@dataclass(frozen=True)
class SplitPart:
    """A split as named: a whole split of the benchmark (``part`` None), or its fit or holdout part."""

    name: str
    base: str
    part: str | None = None
    holdout_percent: int = DEFAULT_HOLDOUT_PERCENT

    def contains(self, video_id: str) -> bool:
        """Whether the video belongs to this part of its base split."""
        if self.part is None:
            return True
        return is_held_out(video_id, self.holdout_percent) == (self.part == HOLDOUT)


def parse_split(name: str) -> SplitPart:
    """The split a name addresses: ``train-holdout`` is the held-out part of ``train``, ``train`` all of it."""
    match = _DERIVED.fullmatch(name)
    if match is None:
        return SplitPart(name, name)
    percent = int(match["percent"]) if match["percent"] else DEFAULT_HOLDOUT_PERCENT
    if not 1 <= percent <= 99:
        raise DataError(f"split {name!r}: the held-out share must be a whole percent from 1 to 99, got {percent}")
    return SplitPart(name, match["base"], match["part"], percent)


def holdout_position(video_id: str) -> float:
    """Where a video id falls in [0, 1): the first 8 bytes of the SHA-256 of its UTF-8 text over 2**64."""
    digest = hashlib.sha256(video_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def is_held_out(video_id: str, holdout_percent: int = DEFAULT_HOLDOUT_PERCENT) -> bool:
    """Whether the video is among the ``holdout_percent`` percent held out of its split."""
    return holdout_position(video_id) < holdout_percent / 100


def select_part(videos: Iterable[Video], part: SplitPart) -> Iterator[Video]:
    """The videos of ``part`` among those of its base split, labelled with the part's name."""
    for video in videos:
        if part.contains(video.video_id):
            yield dataclasses.replace(video, split=part.name)


def may_share_videos(first: SplitPart, second: SplitPart) -> bool:
    """Whether two splits of one benchmark may hold the same video (different base splits never do)."""
    if first.base != second.base:
        return False
    complementary = first.part is not None and second.part is not None and first.part != second.part
    return not (complementary and first.holdout_percent == second.holdout_percent)
