"""Benchmark readers: each turns a dataset on disk into ``Video`` records (see ``groprompt.data.records``).

    read_videos("ref-davis17", "data/ref-davis17")   # split None: the benchmark's evaluation split
    dataset_summary("a2d-sentences", "annotations/a2d_annotation.txt")

Formats: ref-youtube-vos, ref-davis17, refshapes (the ReferFormer layout), a2d-sentences, jhmdb-sentences, mevis.
``root`` is the dataset folder as the standard preparation leaves it, or, for annotation-only counting, the
annotation file itself (the meta_expressions.json, a2d_annotation.txt or the JHMDB samples metadata).
Default splits (``split=None``): "valid" for the ReferFormer layout; "test" for A2D-Sentences ("all" when
Release/videoset.csv is absent); JHMDB-Sentences is one evaluation set, labelled "test"; "valid_u" for MeViS (whose
``root`` is always the dataset folder).

Every training split also has held-out parts by name (``train-fit``, ``train-holdout``: see
``groprompt.data.splits``); each format declares its test splits, which are never divided, trained on or
selected on (``check_training_splits``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from groprompt.config import DataConfig
from groprompt.data.formats.a2d_sentences import TEST_SPLITS as A2D_TEST_SPLITS
from groprompt.data.formats.a2d_sentences import read_a2d_sentences
from groprompt.data.formats.jhmdb_sentences import SPLIT as JHMDB_SPLIT
from groprompt.data.formats.jhmdb_sentences import count_samples, read_jhmdb_sentences
from groprompt.data.formats.mevis import TEST_SPLITS as MEVIS_TEST_SPLITS
from groprompt.data.formats.mevis import read_mevis
from groprompt.data.formats.ref_davis17 import read_ref_davis17
from groprompt.data.formats.ref_youtube_vos import read_ref_youtube_vos, read_refshapes
from groprompt.data.records import Video
from groprompt.data.splits import SplitPart, may_share_videos, parse_split, select_part
from groprompt.errors import ConfigError, DataError

Reader = Callable[[str | Path, str | None, bool], Iterator[Video]]


@dataclass(frozen=True)
class Format:
    """One benchmark format: its reader, its test splits and, optionally, extra counts for ``dataset_summary``."""

    name: str
    read: Reader
    extra_counts: Callable[[str | Path, str | None], dict[str, int]] | None = None
    test_splits: frozenset[str] = frozenset()  # kept for the final evaluation: never divided, trained or selected on
    evaluates_model_of: str | None = None  # the format whose model the paper evaluates here (no training of its own)


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("ref-youtube-vos", read_ref_youtube_vos, test_splits=frozenset({"valid", "test"})),  # valid: scored by the server
        Format("ref-davis17", read_ref_davis17, test_splits=frozenset({"valid"}), evaluates_model_of="ref-youtube-vos"),
        Format("refshapes", read_refshapes),
        Format("a2d-sentences", read_a2d_sentences, test_splits=A2D_TEST_SPLITS),
        Format(
            "jhmdb-sentences", read_jhmdb_sentences, count_samples, test_splits=frozenset({JHMDB_SPLIT}), evaluates_model_of="a2d-sentences"
        ),
        Format("mevis", read_mevis, test_splits=MEVIS_TEST_SPLITS),  # valid_u: the local numbers; valid: the server's
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

    ``split`` may name a held-out part (``train-holdout``, ``train-fit``) of any split but a test split.
    ``with_boxes=False`` leaves ``Video.boxes`` empty and reads no mask (fast counting).
    """
    spec = get_format(format)
    part = parse_split(split) if split is not None else None
    if part is None or part.part is None:
        return spec.read(root, split, with_boxes)
    if part.base in spec.test_splits:
        raise DataError(f"{root}: split {split!r}: {part.base!r} is a test split of {format}; only training splits have held-out parts")
    return select_part(spec.read(root, part.base, with_boxes), part)


def check_training_splits(data: DataConfig) -> None:
    """Refuse, with a ``ConfigError`` naming the key, a training or sweep run whose validation would mislead.

    That is: no training split (an evaluation-only configuration), training or selecting on a test split, or a
    validation split that may share videos with the training split. Run it in the driver before any work, and
    again where training starts.
    """
    spec = get_format(data.format)
    if data.split is None:
        model = f" (the paper evaluates the {spec.evaluates_model_of} model here)" if spec.evaluates_model_of else ""
        raise ConfigError(f"data.split is null: this {data.format} configuration is for evaluation only{model}; train with another one")
    split, val_split = _parsed_split("data.split", data.split), _parsed_split("data.val_split", data.val_split)
    for key, part in (("data.split", split), ("data.val_split", val_split)):
        if part.base in spec.test_splits:
            raise ConfigError(
                f"{key}: {part.name!r} is a test split of {data.format}, kept for the final evaluation; "
                "train and validate on training videos (data.split=train-fit, data.val_split=train-holdout)"
            )
    if may_share_videos(split, val_split):
        raise ConfigError(
            f"data.val_split: {val_split.name!r} may share videos with data.split {split.name!r}; "
            f"validate on held-out videos (data.split={split.base}-fit, data.val_split={split.base}-holdout)"
        )


def _parsed_split(key: str, name: str) -> SplitPart:
    """``parse_split`` with its error as a ``ConfigError`` naming the key."""
    try:
        return parse_split(name)
    except DataError as error:
        raise ConfigError(f"{key}: {error}") from None


def dataset_summary(format: str, root: str | Path, split: str | None = None) -> dict[str, int]:
    """{"videos", "expressions", "frames" (frames on disk)} and any format-specific counts."""
    spec = get_format(format)
    videos = expressions = frames = 0
    for video in read_videos(format, root, split, with_boxes=False):
        videos += 1
        expressions += len(video.expressions)
        frames += video.frames.available() if video.frames is not None else 0
    summary = {"videos": videos, "expressions": expressions, "frames": frames}
    if spec.extra_counts is not None:
        summary.update(spec.extra_counts(root, split))
    return summary


__all__ = ["FORMATS", "Format", "check_training_splits", "dataset_summary", "get_format", "read_videos"]
