"""From partial rows (one per sample and expression) to one row per expression, and to the summary means."""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd

from groprompt.evaluation.metrics import iou_summary

IOU_DATASETS = ("a2d-sentences", "jhmdb-sentences")  # summaries add P@K, overall and mean IoU over frame samples
KEY_COLUMNS = ("video", "exp_id")
INFO_COLUMNS = ("dataset", "kind", "obj_id", "text")
SUM_COLUMNS = ("j_sum", "f_sum", "n_frames", "box_iou_sum", "n_box_frames")  # summed over windows
# One entry per frame sample (an annotated frame where the object is present), in frame order; joined over windows.
SAMPLE_COLUMNS = ("sample_intersections", "sample_unions")
TABLE_COLUMNS = (*KEY_COLUMNS, *INFO_COLUMNS, "J", "F", "JF", "box_iou", "n_frames", "n_box_frames", *SAMPLE_COLUMNS)


def merge_partials(partials: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One row per expression (video, exp_id): J, F, JF (means over its annotated frames), box_iou (over the
    frames where the object is present), n_frames, n_box_frames, and the pixel intersection and union of each
    frame sample (lists, in the order of the partials); NaN where no frame counts."""
    if not partials:
        return pd.DataFrame(columns=list(TABLE_COLUMNS))
    frame = pd.DataFrame(list(partials))
    frame["kind"] = frame["kind"].astype(object).where(frame["kind"].notna(), None)
    grouped = frame.groupby(list(KEY_COLUMNS), sort=True, dropna=False)
    samples = grouped[list(SAMPLE_COLUMNS)].agg(lambda lists: [int(v) for v in chain.from_iterable(lists)])
    table = grouped[list(SUM_COLUMNS)].sum().join(grouped[list(INFO_COLUMNS)].first()).join(samples).reset_index()
    frames, box_frames = table["n_frames"], table["n_box_frames"]
    table["J"] = (table["j_sum"] / frames).where(frames > 0)
    table["F"] = (table["f_sum"] / frames).where(frames > 0)
    table["JF"] = (table["J"] + table["F"]) / 2
    table["box_iou"] = (table["box_iou_sum"] / box_frames).where(box_frames > 0)
    table["n_frames"] = frames.astype(int)
    table["n_box_frames"] = box_frames.astype(int)
    table["obj_id"] = table["obj_id"].astype(int)
    table["kind"] = [k if isinstance(k, str) else None for k in table["kind"]]
    return table[list(TABLE_COLUMNS)]


def expression_means(table: pd.DataFrame) -> dict[str, Any]:
    """Counts and means over the expressions of ``table`` with at least one annotated frame (box IoU: over those
    with a box frame); NaN when there are none."""
    scored = table[table["n_frames"] > 0]
    return {
        "n_expressions": int(len(scored)),
        "n_frames": int(scored["n_frames"].sum()),
        "J": float(scored["J"].mean()) if len(scored) else math.nan,
        "F": float(scored["F"].mean()) if len(scored) else math.nan,
        "JF": float(scored["JF"].mean()) if len(scored) else math.nan,
        "box_iou": float(table["box_iou"].dropna().mean()) if table["box_iou"].notna().any() else math.nan,
    }


def sample_metrics(table: pd.DataFrame) -> dict[str, Any]:
    """The A2D/JHMDB-Sentences protocol over every frame sample of ``table``: ``n_samples``, ``P@K``,
    ``overall_iou`` and ``mean_iou`` (``groprompt.evaluation.metrics.iou_summary``); only ``n_samples`` (0) without samples."""
    intersections = np.fromiter(chain.from_iterable(table["sample_intersections"]), dtype=np.int64)
    unions = np.fromiter(chain.from_iterable(table["sample_unions"]), dtype=np.int64)
    if intersections.size == 0:
        return {"n_samples": 0}
    return {"n_samples": int(intersections.size), **iou_summary(intersections, unions)}


def summarize(table: pd.DataFrame) -> dict[str, Any]:
    """Means over expressions (with at least one annotated frame) of J, F, J&F and box IoU.

    Adds ``n_samples``, ``P@K``, ``overall_iou`` and ``mean_iou`` over frame samples for A2D/JHMDB-Sentences, and
    ``by_kind`` (the same means per expression type) when expressions carry a type (RefShapes).
    """
    summary = expression_means(table)
    datasets = sorted({d for d in table["dataset"] if d}) if len(table) else []
    summary["dataset"] = ",".join(datasets)
    if any(d in IOU_DATASETS for d in datasets):
        summary.update(sample_metrics(table))
    kinds = sorted({k for k in table["kind"] if isinstance(k, str) and k}) if len(table) else []
    if kinds:
        summary["by_kind"] = {kind: expression_means(table[table["kind"] == kind]) for kind in kinds}
    return summary
