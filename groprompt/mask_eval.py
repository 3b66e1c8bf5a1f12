"""``groprompt eval-masks``: DAVIS J, F and J&F of a folder of predicted masks against the ground truth.

Both folders use the DAVIS layout, ``<sequence>/<frame>.png``: palette PNGs holding one id per object
(0 = background; 255 in the ground truth = void, ignored as in the official DAVIS evaluation). The RVOS
protocol scores every frame (the first and last frames are not dropped). Each object id found in any
ground-truth frame of a sequence is compared with the same id in the prediction, frame by frame; an object's
score is its mean over the frames, a sequence's the mean over its objects. The global J and F are the means
over all (sequence, object) pairs, like the official "J-Mean" and "F-Mean"; J&F is their average.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from groprompt.errors import DataError
from groprompt.files import atomic_path
from groprompt.metrics import j_and_f
from groprompt.outputs import VOID_ID, read_index_png

CSV_COLUMNS = ("sequence", "n_frames", "J_mean", "F_mean", "JF_mean")


@dataclass(frozen=True)
class SequenceScores:
    """One sequence: per object (``object_ids``), J and F averaged over its ``n_frames`` frames."""

    sequence: str
    n_frames: int
    object_ids: tuple[int, ...]
    j: tuple[float, ...]
    f: tuple[float, ...]

    @property
    def j_mean(self) -> float:
        return float(np.mean(self.j))

    @property
    def f_mean(self) -> float:
        return float(np.mean(self.f))

    @property
    def jf_mean(self) -> float:
        return (self.j_mean + self.f_mean) / 2


def _present_ids(ids: np.ndarray) -> set[int]:
    """Object ids (not background, not void) that occur in an id map."""
    counts = np.bincount(ids.ravel())
    return {int(i) for i in np.flatnonzero(counts) if i not in (0, VOID_ID)}


def evaluate_sequence(gt_dir: Path, pred_dir: Path) -> SequenceScores:
    """Score one sequence folder against its prediction folder (see the module docstring)."""
    frames = sorted(gt_dir.glob("*.png"))
    if not frames:
        raise DataError(f"{gt_dir}: no ground-truth PNG frames")
    if not pred_dir.is_dir():
        raise DataError(f"{pred_dir}: prediction sequence folder is missing")
    gt_ids: set[int] = set()
    # per_frame[t][obj] = (J, F) for every object present in frame t's ground truth or prediction; an object
    # absent from both is two empty masks, which scores J = F = 1.
    per_frame: list[dict[int, tuple[float, float]]] = []
    for gt_path in frames:
        pred_path = pred_dir / gt_path.name
        if not pred_path.is_file():
            raise DataError(f"{pred_path}: prediction frame is missing")
        gt, pred = read_index_png(gt_path), read_index_png(pred_path)
        if gt.shape != pred.shape:
            raise DataError(
                f"{pred_path}: size {pred.shape[1]}x{pred.shape[0]} differs from the ground truth's "
                f"{gt.shape[1]}x{gt.shape[0]}"
            )
        void = gt == VOID_ID
        present = _present_ids(gt)
        gt_ids |= present
        per_frame.append({obj: j_and_f(gt == obj, pred == obj, void)[:2] for obj in present | _present_ids(pred)})
    if not gt_ids:
        raise DataError(f"{gt_dir}: no object id in any ground-truth frame")
    object_ids = tuple(sorted(gt_ids))
    scores = np.array([[frame.get(obj, (1.0, 1.0)) for frame in per_frame] for obj in object_ids])
    means = scores.mean(axis=1)  # (objects, 2): J and F over the frames
    return SequenceScores(
        sequence=gt_dir.name,
        n_frames=len(frames),
        object_ids=object_ids,
        j=tuple(float(v) for v in means[:, 0]),
        f=tuple(float(v) for v in means[:, 1]),
    )


def evaluate_folders(
    gt_dir: str | Path, pred_dir: str | Path, workers: int | None = None
) -> list[SequenceScores]:
    """Score every sequence of ``gt_dir`` (sorted by name) against ``pred_dir``, sequences in parallel threads.

    Raises DataError, naming the file, for a missing folder or frame, a size mismatch or an unreadable PNG.
    Prediction sequences, frames and object ids absent from the ground truth are ignored.
    """
    gt_dir, pred_dir = Path(gt_dir), Path(pred_dir)
    for folder, role in ((gt_dir, "ground-truth"), (pred_dir, "prediction")):
        if not folder.is_dir():
            raise DataError(f"{folder}: {role} folder is missing")
    sequences = sorted(p.name for p in gt_dir.iterdir() if p.is_dir())
    if not sequences:
        raise DataError(f"{gt_dir}: no sequence folders")
    workers = workers or min(8, os.cpu_count() or 1, len(sequences))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda name: evaluate_sequence(gt_dir / name, pred_dir / name), sequences))


def global_means(scores: Sequence[SequenceScores]) -> dict[str, float]:
    """J_mean and F_mean over all (sequence, object) pairs, and JF_mean, their average."""
    if not scores:
        raise ValueError("no sequence scores")
    j = float(np.mean([v for s in scores for v in s.j]))
    f = float(np.mean([v for s in scores for v in s.f]))
    return {"J_mean": j, "F_mean": f, "JF_mean": (j + f) / 2}


def format_mean_row(scores: Sequence[SequenceScores]) -> str:
    """One line with the global means, e.g. ``mean of 8 sequences, 8 objects, 537 frames: J_mean=...``."""
    means = global_means(scores)
    n_objects = sum(len(s.object_ids) for s in scores)
    n_frames = sum(s.n_frames for s in scores)
    values = " ".join(f"{name}={value:.4f}" for name, value in means.items())
    return f"mean of {len(scores)} sequences, {n_objects} objects, {n_frames} frames: {values}"


def write_csv(scores: Sequence[SequenceScores], path: str | Path) -> None:
    """Write one row per sequence, columns ``sequence,n_frames,J_mean,F_mean,JF_mean``, atomically."""
    path = Path(path)
    with atomic_path(path) as temporary, temporary.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for s in scores:
            writer.writerow([s.sequence, s.n_frames, f"{s.j_mean:.6f}", f"{s.f_mean:.6f}", f"{s.jf_mean:.6f}"])
