"""Training clips: the (clip, referring expression) items of an epoch, each with its negative sentence, shuffled
through a bounded buffer and shared out among the workers.

Workers never run the SAM image encoder: a clip is T consecutive cached embeddings, one referring sentence S_i
with its boxes, and a negative sentence S_j (another object's expression in the same video, or another video's
when the video has one object). Only for a generator that reads pixels (Grounding DINO) are the clip's frames
decoded from the frame shard and resized (``pixel_size``); masks are never read.
"""

from __future__ import annotations

import math
import random
from collections.abc import Container, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from groprompt.data.pixels import sample_pixels
from groprompt.data.shard_pairs import ShardPair, joined_shard_samples, metadata_of
from groprompt.data.targets import member_boxes, normalised_boxes, referring_expressions
from groprompt.errors import DataError


@dataclass(frozen=True)
class ClipItem:
    """One training example (arrays, not yet batched)."""

    embeddings: np.ndarray  # (T, C, g, g)
    sentence: str
    negative: str
    boxes: np.ndarray  # (T, 4) normalised cxcywh
    valid: np.ndarray  # (T,) bool
    negative_boxes: np.ndarray
    negative_valid: np.ndarray
    same_video: bool  # S_j names another object of the same video
    input_size: tuple[int, int]
    members: np.ndarray  # (T, M, 4) the boxes of the sentence's objects (one for a sentence about one object)
    members_valid: np.ndarray  # (T, M)
    negative_members: np.ndarray  # (T, M', 4)
    negative_members_valid: np.ndarray  # (T, M')
    annotated: np.ndarray  # (T,) bool
    pixels: np.ndarray | None = None  # (T, 3, S, S) uint8
    previous: np.ndarray | None = None  # (C, g, g) the frame before the clip in its sample (its first frame at the start)


def clip_ranges(n_frames: int, clip_len: int) -> list[range]:
    """Consecutive, non-overlapping clips of exactly ``clip_len`` frames."""
    return [range(start, start + clip_len) for start in range(0, n_frames - clip_len + 1, clip_len)]


@dataclass(frozen=True, order=True)
class ClipRef:
    """Which training item: the clip starting at frame ``start`` of sample ``key``, with its ``expression``-th
    referring expression (``referring_expressions`` order)."""

    key: str
    start: int
    expression: int


def clip_refs(meta: dict[str, Any], clip_len: int) -> list[ClipRef]:
    """Every (clip, referring expression) of one sample whose object is visible in the clip: the training items."""
    expressions = referring_expressions(meta)
    return [
        ClipRef(meta["key"], frames.start, index)
        for frames in clip_ranges(len(meta["frame_names"]), clip_len)
        for index, expression in enumerate(expressions)
        if normalised_boxes(meta, expression["obj_id"], frames)[1].any()
    ]


def sample_items(
    meta: dict[str, Any],
    embeddings: np.ndarray,
    input_size: tuple[int, int],
    clip_len: int,
    rng: random.Random,
    other_sentences: list[str],
    wanted: Container[ClipRef],
    pixels: np.ndarray | None = None,
) -> Iterator[ClipItem]:
    """The ``wanted`` items of one sample (see ``clip_refs``), each with a negative: another object's expression of
    the video, or another video's sentence when the video has one object; with the embedding of the frame before the
    clip (the motion input of its first frame: a clip sees its past as the online stream does), and the clip's frames
    when the sample's ``pixels`` (W, 3, S, S) are given."""
    expressions = referring_expressions(meta)
    annotated = meta.get("annotated") or [True] * len(meta["frame_names"])
    for ref in clip_refs(meta, clip_len):
        if ref not in wanted:
            continue
        frames = range(ref.start, ref.start + clip_len)
        expression = expressions[ref.expression]
        boxes, valid = normalised_boxes(meta, expression["obj_id"], frames)
        others = [e for e in expressions if e["obj_id"] != expression["obj_id"]]
        negative = rng.choice(others) if others else None
        negative_text = negative["text"] if negative else (rng.choice(other_sentences) if other_sentences else "")
        negative_target = negative["obj_id"] if negative else None
        negative_boxes, negative_valid = normalised_boxes(meta, negative_target, frames)
        members, negative_members = member_boxes(meta, expression["obj_id"], frames), member_boxes(meta, negative_target, frames)
        yield ClipItem(
            embeddings=embeddings[frames.start : frames.stop],
            sentence=expression["text"],
            negative=negative_text,
            boxes=boxes,
            valid=valid,
            negative_boxes=negative_boxes,
            negative_valid=negative_valid,
            same_video=bool(others),
            input_size=input_size,
            members=members[0],
            members_valid=members[1],
            negative_members=negative_members[0],
            negative_members_valid=negative_members[1],
            annotated=np.array([bool(annotated[t]) for t in frames]),
            pixels=None if pixels is None else pixels[frames.start : frames.stop],
            previous=embeddings[max(frames.start - 1, 0)],
        )


class ClipSource:
    """The training items of a split (``clip_refs``), dealt to ranks clip by clip: each epoch orders the samples at
    random (the epoch's seed, the same on every rank), lists their items in that order and cuts the list into
    ``world`` consecutive parts of equal size (within one item). An epoch thus shows every item exactly once across
    the ranks, whatever the number of shards and workers, and a rank reads only its parts' samples (one sample may
    be shared by two ranks). With ``pixel_size``, each clip's frames too (for a generator that reads pixels)."""

    def __init__(self, pairs: list[ShardPair], clip_len: int, rank: int = 0, world: int = 1, pixel_size: int | None = None) -> None:
        self.pairs = pairs
        self.clip_len = clip_len
        self.rank, self.world = rank, world
        self.pixel_size = pixel_size
        metas = metadata_of(pairs)
        self.refs = sorted(ref for meta in metas for ref in clip_refs(meta, clip_len))
        self.sentences = sorted({e["text"] for meta in metas for e in referring_expressions(meta)})
        if len(self.refs) < world:
            raise DataError(f"{len(self.refs)} training clips for {world} workers: every worker needs one; lower train.num_workers")

    @property
    def count(self) -> int:
        """How many items this rank trains on per epoch."""
        return self._end(self.rank + 1) - self._end(self.rank)

    def steps(self, batch_size: int) -> int:
        """Steps per epoch, the same on every rank (DDP keeps them in lock-step): the largest rank's full batches."""
        return math.ceil(math.ceil(len(self.refs) / self.world) / batch_size)

    def epoch_refs(self, seed: int) -> list[ClipRef]:
        """This rank's items in the epoch of ``seed``."""
        keys = sorted({ref.key for ref in self.refs})
        random.Random(seed).shuffle(keys)
        position = {key: index for index, key in enumerate(keys)}
        order = sorted(self.refs, key=lambda ref: (position[ref.key], ref))
        return order[self._end(self.rank) : self._end(self.rank + 1)]

    def _end(self, rank: int) -> int:
        """Where the part of ranks before ``rank`` ends in an epoch's list of items."""
        return rank * len(self.refs) // self.world

    def items(self, seed: int, shuffle_buffer: int = 256) -> Iterator[ClipItem]:
        """Stream this rank's items of the epoch of ``seed``: shard order and items shuffled (per rank)."""
        wanted = set(self.epoch_refs(seed))
        keys = {ref.key for ref in wanted}
        rng = random.Random(f"{seed}/{self.rank}")
        pairs = list(self.pairs)
        rng.shuffle(pairs)
        buffer: list[ClipItem] = []
        for pair in pairs:
            for sample, embeddings, input_size in joined_shard_samples(pair, with_images=self.pixel_size is not None, keys=keys):
                meta = sample.meta
                if meta["key"] not in keys:
                    continue
                pixels = sample_pixels(sample, self.pixel_size)
                own = {e["text"] for e in meta["expressions"]}
                others = [s for s in self.sentences if s not in own]
                for item in sample_items(meta, embeddings, input_size, self.clip_len, rng, others, wanted, pixels):
                    buffer.append(item)
                    if len(buffer) >= shuffle_buffer:
                        yield buffer.pop(rng.randrange(len(buffer)))
        rng.shuffle(buffer)
        yield from buffer
