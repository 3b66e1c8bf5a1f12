"""The loss ablation report, shaped like the paper's Table 6: box IoU and J&F, J, F per configuration.

    groprompt report --row "L_box only=work/eval/box/summary.json" \\
        --row "L_box + L_contra=work/eval/contra/summary.json" \\
        --row "Sentence-blind: a random object's GT box=work/eval/sentence-blind/summary.json" \\
        --row "GT box + grabcut=work/eval/oracle/summary.json" --out work/report.md

Rows are evaluation summaries (``pipelines/evaluate.py``'s ``summary.json``); values are percentages. When the
summaries carry expression types (RefShapes), one more table per type follows the overall one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from groprompt.files import Location, local_file, location, write_text_atomic

ROW_BOX_ONLY = "L_box only"
ROW_CONTRA = "L_box + L_contra"
ROW_SENTENCE_BLIND = "Sentence-blind: a random object's GT box"
ROW_NOTES = {
    ROW_SENTENCE_BLIND: "Sentence-blind: in each frame, the ground-truth box of an object drawn at random, whatever the "
    "sentence says: a perfect localiser that ignores language (about 1 / number of objects).\n",
}
"""A line under the table's note for each of these rows that the report holds."""
COLUMNS = ("Box (IoU, %)", "J&F", "J", "F")
_KEYS = ("box_iou", "JF", "J", "F")


def oracle_row(segmentor: str) -> str:
    """The upper-bound row's name: ``GT box + SAM`` in the paper, ``GT box + grabcut`` offline."""
    return f"GT box + {'SAM' if segmentor == 'sam' else segmentor}"


def _cell(value: Any) -> str:
    """A fraction as a percentage with one decimal; ``-`` when missing or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{100 * float(value):.1f}"


def _table(rows: Mapping[str, Mapping[str, Any]]) -> str:
    """A Markdown table: one row per method, one column per entry of ``COLUMNS``."""
    lines = ["| Method | " + " | ".join(COLUMNS) + " |", "|---|" + "---:|" * len(COLUMNS)]
    for name, values in rows.items():
        lines.append(f"| {name} | " + " | ".join(_cell(values.get(key)) for key in _KEYS) + " |")
    return "\n".join(lines) + "\n"


def ablation_report(results: Mapping[str, Mapping[str, Any]], title: str = "Loss ablation (cf. GroPrompt Table 6)") -> str:
    """A Markdown report: one table over all expressions, then one per expression type found in any summary.

    ``results`` maps a row name (in display order) to an evaluation summary with ``box_iou``, ``JF``, ``J``
    and ``F`` in [0, 1] (and optionally ``by_kind``); missing or NaN values print as ``-``.
    """
    if not results:
        raise ValueError("no results to report")
    note = "Values in %. Box: mean IoU of the prompt boxes over the frames where the object is present.\n"
    notes = "".join(text for row, text in ROW_NOTES.items() if row in results)
    parts = [f"# {title}\n", note + notes, _table(results)]
    kinds = sorted({kind for summary in results.values() for kind in summary.get("by_kind", {})})
    for kind in kinds:
        per_kind = {name: summary.get("by_kind", {}).get(kind, {}) for name, summary in results.items()}
        counts = {v.get("n_expressions") for v in per_kind.values() if v}
        count = f" ({counts.pop()} expressions)" if len(counts) == 1 else ""
        parts += [f"\n## Expression type: {kind}{count}\n", _table(per_kind)]
    return "\n".join(parts)


def write_report(
    path: str | Path | Location,
    results: Mapping[str, Mapping[str, Any]],
    run_id: str | None = None,
    tracking_uri: str | None = None,
    title: str | None = None,
) -> Location:
    """Write ``ablation_report(results)`` to ``path`` (a file or an object) atomically; log it to MLflow run ``run_id`` when given."""
    path = location(path)
    text = ablation_report(results) if title is None else ablation_report(results, title)
    write_text_atomic(path, text)
    if run_id is not None:
        from mlflow import MlflowClient

        from groprompt.tracking import resolve_tracking_uri

        with local_file(path) as local:
            MlflowClient(resolve_tracking_uri(tracking_uri)).log_artifact(run_id, str(local))
    return path
