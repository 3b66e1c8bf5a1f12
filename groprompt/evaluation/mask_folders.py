"""``groprompt eval-masks``: DAVIS J, F and J&F of a folder of predicted masks against the ground truth.

Both folders use the DAVIS layout, ``<sequence>/<frame>.png``: palette PNGs holding one id per object
(0 = background). Every ground-truth frame of a sequence is scored (the first and last frames are not dropped),
and its prediction must exist. Two tasks:

- ``semi-supervised`` (identity matching): each object id found in any ground-truth frame of a sequence is
  compared with the same id in the prediction, frame by frame; 255 in the ground truth is void, ignored.
- ``unsupervised``: davis2017-evaluation's unsupervised task (``DAVISEvaluation._evaluate_unsupervised``). The
  ground-truth objects are the ids 1..N, N the largest id of the first frame; the predicted objects are the ids
  1..M, M the largest id in any predicted frame (at most ``MAX_PROPOSALS``), padded with empty masks up to N.
  J and F of every (predicted, ground-truth) pair over all frames, then the Hungarian assignment
  (``scipy.optimize.linear_sum_assignment``) that maximises the pairs' mean J&F; unassigned predicted objects
  are ignored. As in the released code, 255 in the ground truth counts as background (its void test never fires).

An object's score is its mean over the frames, a sequence's the mean over its objects. The global J and F are the
means over all (sequence, object) pairs, like the official "J-Mean" and "F-Mean"; J&F is their average.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from groprompt.errors import DataError
from groprompt.evaluation.metrics import j_and_f
from groprompt.files import Location, atomic_path, list_folder, location
from groprompt.mask_io import VOID_ID, read_index_png

CSV_COLUMNS = ("sequence", "n_frames", "J_mean", "F_mean", "JF_mean")
TASKS = ("semi-supervised", "unsupervised")
MAX_PROPOSALS = 20  # davis2017-evaluation refuses a prediction with a higher object id in the unsupervised task


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


def _frame_pairs(gt_dir: Location, pred_dir: Location) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(ground truth, prediction) id maps of every ground-truth frame, in name order, read one at a time.

    DataError, naming the file, for a missing folder or frame and a size mismatch.
    """
    frames = sorted(gt_dir.glob("*.png"), key=str)
    if not frames:
        raise DataError(f"{gt_dir}: no ground-truth PNG frames")
    if not pred_dir.is_dir():
        raise DataError(f"{pred_dir}: prediction sequence folder is missing")
    for gt_path in frames:
        pred_path = pred_dir / gt_path.name
        if not pred_path.is_file():
            raise DataError(f"{pred_path}: prediction frame is missing")
        gt, pred = read_index_png(gt_path), read_index_png(pred_path)
        if gt.shape != pred.shape:
            raise DataError(
                f"{pred_path}: size {pred.shape[1]}x{pred.shape[0]} differs from the ground truth's {gt.shape[1]}x{gt.shape[0]}"
            )
        yield gt, pred


def _sequence_scores(sequence: str, n_frames: int, object_ids: Sequence[int], per_frame: np.ndarray) -> SequenceScores:
    """Scores from per-frame values (objects, frames, 2): J and F of each object averaged over the frames."""
    means = per_frame.mean(axis=1)
    return SequenceScores(
        sequence=sequence,
        n_frames=n_frames,
        object_ids=tuple(object_ids),
        j=tuple(float(v) for v in means[:, 0]),
        f=tuple(float(v) for v in means[:, 1]),
    )


def evaluate_sequence(gt_dir: Location, pred_dir: Location) -> SequenceScores:
    """Score one sequence folder against its prediction folder by identity matching (the semi-supervised task)."""
    gt_ids: set[int] = set()
    # per_frame[t][obj] = (J, F) for every object present in frame t's ground truth or prediction; an object
    # absent from both is two empty masks, which scores J = F = 1.
    per_frame: list[dict[int, tuple[float, float]]] = []
    for gt, pred in _frame_pairs(gt_dir, pred_dir):
        void = gt == VOID_ID
        present = _present_ids(gt)
        gt_ids |= present
        per_frame.append({obj: j_and_f(gt == obj, pred == obj, void)[:2] for obj in present | _present_ids(pred)})
    if not gt_ids:
        raise DataError(f"{gt_dir}: no object id in any ground-truth frame")
    object_ids = sorted(gt_ids)
    scores = np.array([[frame.get(obj, (1.0, 1.0)) for frame in per_frame] for obj in object_ids])
    return _sequence_scores(gt_dir.name, len(per_frame), object_ids, scores)


def evaluate_sequence_unsupervised(gt_dir: Location, pred_dir: Location) -> SequenceScores:
    """Score one sequence folder against its prediction folder by the unsupervised task (see the module docstring)."""
    n_gt = 0
    # per frame: J and F (n_gt, 2) of an empty prediction, and of each predicted id present in the frame
    frames: list[tuple[np.ndarray, dict[int, np.ndarray]]] = []
    for t, (gt, pred) in enumerate(_frame_pairs(gt_dir, pred_dir)):
        gt = np.where(gt == VOID_ID, 0, gt)
        if t == 0:
            n_gt = int(gt.max())
            if n_gt == 0:
                raise DataError(f"{gt_dir}: no object id in the first ground-truth frame")
        objects = [gt == obj for obj in range(1, n_gt + 1)]
        predicted = {int(i) for i in np.flatnonzero(np.bincount(pred.ravel())) if i}
        if max(predicted, default=0) > MAX_PROPOSALS:
            raise DataError(
                f"{pred_dir}: object id {max(predicted)} in a prediction; the unsupervised task allows ids up to {MAX_PROPOSALS}"
            )
        empty = np.array([j_and_f(mask, np.zeros_like(mask))[:2] for mask in objects])
        frames.append((empty, {obj: np.array([j_and_f(mask, pred == obj)[:2] for mask in objects]) for obj in predicted}))
    n_pred = max([n_gt, *(max(scores, default=0) for _, scores in frames)])
    values = np.stack([np.stack([scores.get(obj, empty) for empty, scores in frames], axis=1) for obj in range(1, n_pred + 1)])
    pred_rows, gt_columns = linear_sum_assignment(-values.mean(axis=2).mean(axis=2))  # values: (pred, gt, frame, 2)
    matched = values[pred_rows[np.argsort(gt_columns)], np.arange(n_gt)]  # (gt, frame, 2), in ground-truth id order
    return _sequence_scores(gt_dir.name, len(frames), range(1, n_gt + 1), matched)


def evaluate_folders(
    gt_dir: str | Path | Location,
    pred_dir: str | Path | Location,
    workers: int | None = None,
    task: str = "semi-supervised",
    sequences: Sequence[str] | None = None,
) -> list[SequenceScores]:
    """Score every sequence of ``gt_dir`` (or the named ``sequences``), sorted by name, against ``pred_dir`` by
    ``task`` (one of ``TASKS``), sequences in parallel threads.

    Raises DataError, naming the file, for a missing folder or frame, a size mismatch or an unreadable PNG.
    Prediction sequences and frames absent from the ground truth are ignored.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; known: {list(TASKS)}")
    gt_dir, pred_dir = location(gt_dir), location(pred_dir)  # either may be in object storage
    for folder, role in ((gt_dir, "ground-truth"), (pred_dir, "prediction")):
        if not folder.is_dir():
            raise DataError(f"{folder}: {role} folder is missing")
    names = sorted(sequences) if sequences is not None else sorted(p.name for p, is_folder in list_folder(gt_dir) if is_folder)
    if not names:
        raise DataError(f"{gt_dir}: no sequence folders")
    score = evaluate_sequence if task == "semi-supervised" else evaluate_sequence_unsupervised
    workers = workers or min(8, os.cpu_count() or 1, len(names))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda name: score(gt_dir / name, pred_dir / name), names))


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
