"""The MeViS protocol (henghuiding/MeViS ``tools/eval_mevis.py``): J, F and J&F of per-expression PNG predictions.

Predictions are ``<pred>/<video>/<exp_id>/<frame>.png``, any non-zero pixel foreground. For every expression of the
split's meta, the ground truth of a frame is the union of its anno_ids' masks (``RleMasks.union``; empty where they
are all absent); J (``groprompt.evaluation.metrics.region_similarity``: 1 where both masks are empty) and F
(``contour_accuracy``, bound_th 0.008), per frame, are each averaged over ALL the video's frames, then over the
expressions; J&F is the mean of the two means.

Missing predictions, as the official script treats them: a video whose folder is missing scores J = F = 0 in each of
its expressions (the script prints "not found" and scores [0, 0]); a missing expression folder or frame, on which the
script stops with an error, is a ``DataError`` naming the file, and so is a PNG of another size than the frames.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from groprompt.data.formats.mevis import RleMasks
from groprompt.data.records import Video
from groprompt.errors import DataError
from groprompt.evaluation.metrics import j_and_f
from groprompt.files import Location, atomic_path, location
from groprompt.mask_io import read_index_png

CSV_COLUMNS = ("video", "exp_id", "J", "F")


@dataclass(frozen=True)
class ExpressionScore:
    """One expression's J and F, each the mean over all the frames of its video (``n_frames``); 0 when its video has
    no prediction folder (``unpredicted``)."""

    video: str
    exp_id: str
    j: float
    f: float
    n_frames: int
    unpredicted: bool = False


def _objects(video: Video, target: int | None) -> tuple[int, ...]:
    """The objects whose masks make up an expression's ground truth: none, its group's, or its own."""
    return () if target is None else video.groups.get(target, (target,))


def _prediction(path: Location, size: tuple[int, int]) -> np.ndarray:
    """A predicted (H, W) bool mask (non-zero pixels); a ``DataError`` naming the file when missing or of another size."""
    if not path.is_file():
        raise DataError(f"{path}: prediction missing (its video's folder exists: every frame of every expression needs one)")
    mask = read_index_png(path) > 0
    if mask.shape != size:
        raise DataError(f"{path}: prediction is {mask.shape[1]}x{mask.shape[0]} pixels, the video's frames are {size[1]}x{size[0]}")
    return mask


def score_video(video: Video, pred_dir: str | Path | Location) -> list[ExpressionScore]:
    """The scores of every expression of one video (``groprompt.data.formats.mevis``, with its masks), in meta order."""
    if not isinstance(video.masks, RleMasks):
        raise DataError(f"{video.describe()}: has no masks (mask_dict.json) to score against; the 'valid' split is scored by the server")
    folder = location(pred_dir) / video.video_id
    n_frames = len(video.frame_names)
    if not folder.is_dir():
        return [ExpressionScore(video.video_id, e.exp_id, 0.0, 0.0, n_frames, unpredicted=True) for e in video.expressions]
    scores = []
    for expression in video.expressions:
        objects = _objects(video, expression.obj_id)
        values = [
            j_and_f(video.masks.union(objects, t), _prediction(folder / expression.exp_id / f"{name}.png", video.masks.size))[:2]
            for t, name in enumerate(video.frame_names)
        ]
        j, f = np.mean(values, axis=0)
        scores.append(ExpressionScore(video.video_id, expression.exp_id, float(j), float(f), n_frames))
    return scores


def score_videos(videos: Iterable[Video], pred_dir: str | Path | Location, workers: int | None = None) -> list[ExpressionScore]:
    """``score_video`` of every video (videos in parallel threads), in the given order; a ``DataError`` naming the
    folder when there is no prediction folder or no expression to score."""
    pred_dir, videos = location(pred_dir), list(videos)
    if not pred_dir.is_dir():
        raise DataError(f"{pred_dir}: prediction folder is missing")
    if not any(video.expressions for video in videos):
        raise DataError(f"{pred_dir}: the ground truth has no expression to score")
    workers = workers or min(8, os.cpu_count() or 1, len(videos))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return [score for scores in pool.map(lambda video: score_video(video, pred_dir), videos) for score in scores]


def protocol_means(scores: Sequence[ExpressionScore]) -> dict[str, float | int]:
    """``J`` and ``F``, the means over expressions, ``JF`` their mean, and ``n_expressions``."""
    if not scores:
        raise ValueError("no expression scores")
    j, f = float(np.mean([s.j for s in scores])), float(np.mean([s.f for s in scores]))
    return {"J": j, "F": f, "JF": (j + f) / 2, "n_expressions": len(scores)}


def format_means(scores: Sequence[ExpressionScore]) -> str:
    """One line: ``MeViS protocol, 793 expressions of 50 videos: J=... F=... J&F=...``, and how many videos had no
    prediction folder (scored 0) when some had none."""
    means = protocol_means(scores)
    videos, unpredicted = len({s.video for s in scores}), len({s.video for s in scores if s.unpredicted})
    line = f"MeViS protocol, {means['n_expressions']} expressions of {videos} videos: J={means['J']:.4f} F={means['F']:.4f} J&F={means['JF']:.4f}"
    return line + (f" ({unpredicted} videos without a prediction folder, scored 0)" if unpredicted else "")


def write_csv(scores: Sequence[ExpressionScore], path: str | Path) -> None:
    """One row per expression, columns ``video,exp_id,J,F``, written atomically."""
    path = Path(path)
    with atomic_path(path) as temporary, temporary.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        writer.writerows([s.video, s.exp_id, f"{s.j:.6f}", f"{s.f:.6f}"] for s in scores)
