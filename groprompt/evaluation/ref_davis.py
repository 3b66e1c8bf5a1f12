"""Ref-DAVIS17 as the paper reports it: per annotator, all of a video's expressions merged into one palette PNG
per frame, scored by davis2017-evaluation's unsupervised task; each annotator and their mean.

In the ReferFormer layout every object of a video has one sentence from each of the 4 "annotators" (annotator 1's
first-frame and full-video sentences, then annotator 2's), listed object by object: expression k of a video is
annotator k % 4's sentence about object k // 4 + 1 (ReferFormer's ``inference_davis.py``: ``i = obj_id * 4 +
anno_id``). ``annotator_ranks`` reads the annotator as the rank of an expression among those of its object, which
is the same thing and needs no count. Merged masks: ``groprompt.mask_io.ids_from_masks`` (where two expressions'
masks overlap, the higher object id wins; ReferFormer takes the more confident one, which binary masks lack).

Layout written and read, the one ReferFormer's ``eval_davis.py`` scores: ``<root>/anno_<k>/<video>/<frame>.png``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from groprompt.errors import DataError
from groprompt.evaluation.mask_folders import evaluate_folders, global_means
from groprompt.files import Location, list_folder, location
from groprompt.mask_io import write_object_pngs


def annotator_ranks(obj_ids: Sequence[int]) -> list[int]:
    """The annotator of each expression of a video, given the expressions' object ids in meta order: its rank
    among the expressions of the same object."""
    seen: dict[int, int] = {}
    ranks = []
    for obj in obj_ids:
        ranks.append(seen.get(obj, 0))
        seen[obj] = ranks[-1] + 1
    return ranks


def annotator_folder(root: str | Path | Location, annotator: int) -> Location:
    """Where annotator ``annotator``'s merged PNGs go: ``<root>/anno_<k>`` (local or in object storage)."""
    return location(root) / f"anno_{annotator}"


def write_annotator_frame(root: str | Path | Location, video: str, frame: str, obj_ids: Sequence[int], masks: np.ndarray) -> None:
    """Write one frame of a video for every annotator: ``<root>/anno_<k>/<video>/<frame>.png``, each the id map of
    that annotator's expressions' masks (``masks``: (E, H, W), one per expression, in meta order)."""
    ranks = annotator_ranks(obj_ids)
    for annotator in range(max(ranks, default=-1) + 1):
        merged = {obj: mask for obj, mask, rank in zip(obj_ids, masks, ranks) if rank == annotator}
        write_object_pngs(annotator_folder(root, annotator), video, [(frame, merged)])


def score_annotators(gt_dir: str | Path | Location, root: str | Path | Location, sequences: Sequence[str]) -> dict[str, Any]:
    """The unsupervised task per annotator folder of ``root`` against the ground truth ``gt_dir`` (DAVIS layout),
    over ``sequences``: ``{"anno_<k>": {"J", "F", "JF"}, ..., "mean": {"J", "F", "JF"}, "n_sequences", "n_objects"}``."""
    annotators = [path for path, is_folder in list_folder(location(root)) if is_folder and path.name.startswith("anno_")]
    folders = sorted(annotators, key=lambda p: int(p.name.removeprefix("anno_")))
    if not folders:
        raise DataError(f"{root}: no annotator folders anno_<k>")
    scores = {folder.name: evaluate_folders(gt_dir, folder, task="unsupervised", sequences=sequences) for folder in folders}
    result: dict[str, Any] = {}
    for name, sequence_scores in scores.items():
        means = global_means(sequence_scores)
        result[name] = {"J": means["J_mean"], "F": means["F_mean"], "JF": means["JF_mean"]}
    result["mean"] = {metric: float(np.mean([result[name][metric] for name in scores])) for metric in ("J", "F", "JF")}
    first = next(iter(scores.values()))
    result["n_sequences"], result["n_objects"] = len(first), sum(len(s.object_ids) for s in first)
    return result
