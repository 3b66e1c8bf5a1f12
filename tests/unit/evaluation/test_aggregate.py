"""Merging partial rows per expression and the summary means (per kind, and P@K / IoU for A2D)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from groprompt.evaluation.aggregate import merge_partials, summarize


def test_summary_by_kind_and_iou_metrics_for_a2d(partial_row: Callable[..., dict[str, Any]]) -> None:
    shapes = merge_partials(
        [
            partial_row("v1", "0", "motion", 0.2, 2, 10, "refshapes"),
            partial_row("v1", "0", "motion", 0.4, 3, 10, "refshapes"),  # second window of the same expression
            partial_row("v2", "0", "position", 0.9, 9, 10, "refshapes"),
        ]
    )
    assert len(shapes) == 2 and math.isclose(shapes.loc[0, "J"], 0.3) and shapes.loc[0, "n_frames"] == 2
    summary = summarize(shapes)
    assert math.isclose(summary["J"], (0.3 + 0.9) / 2) and "overall_iou" not in summary
    assert set(summary["by_kind"]) == {"motion", "position"} and math.isclose(summary["by_kind"]["position"]["JF"], 0.9)

    a2d = summarize(
        merge_partials([partial_row("a", "0", None, 0.5, 6, 10, "a2d-sentences"), partial_row("b", "0", None, 0.5, 1, 10, "a2d-sentences")])
    )
    assert math.isclose(a2d["overall_iou"], 7 / 20) and math.isclose(a2d["mean_iou"], 0.35)
    assert a2d["P@0.5"] == 0.5 and a2d["P@0.9"] == 0.0 and "by_kind" not in a2d
    assert summarize(merge_partials([]))["n_expressions"] == 0
