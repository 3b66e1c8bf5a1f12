"""Merging partial rows per expression and the summary means (per kind, and the A2D/JHMDB per-sample protocol)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from groprompt.evaluation.aggregate import merge_partials, summarize


def test_summary_by_kind_and_windows_joined(partial_row: Callable[..., dict[str, Any]]) -> None:
    shapes = merge_partials(
        [
            partial_row("v1", "0", "motion", 0.2, [(2, 10)], "refshapes"),
            partial_row("v1", "0", "motion", 0.4, [(3, 10)], "refshapes"),  # second window of the same expression
            partial_row("v2", "0", "position", 0.9, [(9, 10)], "refshapes"),
        ]
    )
    assert len(shapes) == 2 and math.isclose(shapes.loc[0, "J"], 0.3) and shapes.loc[0, "n_frames"] == 2
    assert list(shapes.loc[0, "sample_intersections"]) == [2, 3] and list(shapes.loc[0, "sample_unions"]) == [10, 10]
    summary = summarize(shapes)
    assert math.isclose(summary["J"], (0.3 + 0.9) / 2) and "overall_iou" not in summary and "n_samples" not in summary
    assert set(summary["by_kind"]) == {"motion", "position"} and math.isclose(summary["by_kind"]["position"]["JF"], 0.9)
    assert summarize(merge_partials([]))["n_expressions"] == 0


def test_a2d_metrics_count_frame_samples_not_expressions(partial_row: Callable[..., dict[str, Any]]) -> None:
    # Expression a has two frame samples, split over two windows: IoU 90/100 = 0.9 and 10/200 = 0.05.
    # Expression b has one: 60/100 = 0.6.
    # Per sample (the standard protocol, 3 samples):
    #   overall IoU = (90 + 10 + 60) / (100 + 200 + 100) = 160/400 = 0.4
    #   mean IoU    = (0.9 + 0.05 + 0.6) / 3 = 1.55/3
    #   P@0.5 = 2/3 (0.9, 0.6); P@0.6 = P@0.7 = P@0.8 = 1/3 (0.6 is not above 0.6); P@0.9 = 0 (0.9 is not above 0.9)
    # Per expression (summing a's frames first) it would be: a = 100/300, b = 0.6, mean IoU 0.4667, P@0.5 = 1/2.
    table = merge_partials(
        [
            partial_row("v1", "a", None, 0.5, [(90, 100)], "a2d-sentences"),
            partial_row("v1", "a", None, 0.5, [(10, 200)], "a2d-sentences"),
            partial_row("v2", "b", None, 0.5, [(60, 100)], "a2d-sentences"),
            partial_row("v3", "c", None, 0.5, [], "a2d-sentences"),  # an expression whose object is never present
        ]
    )
    summary = summarize(table)
    assert summary["n_samples"] == 3
    assert summary["overall_iou"] == pytest.approx(0.4)
    assert summary["mean_iou"] == pytest.approx(1.55 / 3)
    assert [summary[f"P@{k}"] for k in ("0.5", "0.6", "0.7", "0.8", "0.9")] == pytest.approx([2 / 3, 1 / 3, 1 / 3, 1 / 3, 0.0])
    assert "by_kind" not in summary
    no_samples = summarize(merge_partials([partial_row("v3", "c", None, 0.5, [], "jhmdb-sentences")]))
    assert no_samples["n_samples"] == 0 and "overall_iou" not in no_samples
