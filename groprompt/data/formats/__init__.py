"""Benchmark readers: each turns a dataset on disk into ``Video`` records (see ``groprompt.data.records``).

    read_videos("ref-davis17", "data/ref-davis17")   # split None: the benchmark's evaluation split
    dataset_summary("a2d-sentences", "annotations/a2d_annotation.txt")

Formats: ref-youtube-vos, ref-davis17, refshapes (the ReferFormer layout), a2d-sentences, jhmdb-sentences.
``root`` is the dataset folder as the standard preparation leaves it, or, for annotation-only counting, the
annotation file itself (the meta_expressions.json, a2d_annotation.txt or the JHMDB samples metadata).
Default splits (``split=None``): "valid" for the ReferFormer layout; "test" for A2D-Sentences ("all" when
Release/videoset.csv is absent); JHMDB-Sentences is one evaluation set, labelled "test".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from groprompt.data.formats.a2d_sentences import read_a2d_sentences
from groprompt.data.formats.jhmdb_sentences import count_samples, read_jhmdb_sentences
from groprompt.data.formats.ref_davis17 import read_ref_davis17
from groprompt.data.formats.ref_youtube_vos import read_ref_youtube_vos, read_refshapes
from groprompt.data.records import Video
from groprompt.errors import DataError

Reader = Callable[[str | Path, str | None, bool], Iterator[Video]]


@dataclass(frozen=True)
class Format:
    """One benchmark format: its reader and, optionally, extra counts for ``dataset_summary``."""

    name: str
    read: Reader
    extra_counts: Callable[[str | Path, str | None], dict[str, int]] | None = None


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("ref-youtube-vos", read_ref_youtube_vos),
        Format("ref-davis17", read_ref_davis17),
        Format("refshapes", read_refshapes),
        Format("a2d-sentences", read_a2d_sentences),
        Format("jhmdb-sentences", read_jhmdb_sentences, count_samples),
    )
}


def get_format(name: str) -> Format:
    """The registered format called ``name``."""
    try:
        return FORMATS[name]
    except KeyError:
        raise DataError(f"unknown dataset format {name!r}; known: {', '.join(FORMATS)}") from None


def read_videos(format: str, root: str | Path, split: str | None = None, with_boxes: bool = True) -> Iterator[Video]:
    """The videos of a benchmark. Annotation files are parsed now (errors surface here); frames lazily.

    ``with_boxes=False`` leaves ``Video.boxes`` empty and reads no mask (fast counting).
    """
    return get_format(format).read(root, split, with_boxes)


def dataset_summary(format: str, root: str | Path, split: str | None = None) -> dict[str, int]:
    """{"videos", "expressions", "frames" (frames on disk)} and any format-specific counts."""
    spec = get_format(format)
    videos = expressions = frames = 0
    for video in spec.read(root, split, False):
        videos += 1
        expressions += len(video.expressions)
        frames += video.frames.available() if video.frames is not None else 0
    summary = {"videos": videos, "expressions": expressions, "frames": frames}
    if spec.extra_counts is not None:
        summary.update(spec.extra_counts(root, split))
    return summary


__all__ = ["FORMATS", "Format", "dataset_summary", "get_format", "read_videos"]
