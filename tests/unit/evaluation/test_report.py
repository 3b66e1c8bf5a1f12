"""The ablation report: Table 6's rows and columns, values in %, per expression type, the file and MLflow."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from groprompt.evaluation.report import ROW_NOTES, ROW_SENTENCE_BLIND, ablation_report, oracle_row, write_report
from tests.helpers import RESULTS


def table_rows(markdown: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in markdown.splitlines() if line.startswith("| ")]


def test_table_has_the_papers_rows_columns_and_percentages() -> None:
    report = ablation_report(RESULTS)
    rows = table_rows(report)
    assert rows[0] == ["Method", "Box (IoU, %)", "J&F", "J", "F"]
    assert rows[1] == ["L_box only", "73.2", "69.8", "67.0", "72.7"]
    assert rows[2] == ["L_box + L_contra", "74.4", "70.6", "67.8", "73.3"]
    assert rows[3] == ["GT box + SAM", "100.0", "83.6", "80.1", "87.2"]
    assert "## Expression type: motion (3 expressions)" in report
    assert rows[5] == ["L_box only", "50.0", "40.0", "30.0", "50.0"] and rows[7][0] == "GT box + SAM"
    assert oracle_row("grabcut") == "GT box + grabcut"


def test_sentence_blind_row_is_explained_only_when_present() -> None:
    blind = {
        "box_iou": 0.41,
        "JF": 0.38,
        "J": 0.36,
        "F": 0.40,
        "by_kind": {"motion": {"box_iou": 0.4, "JF": 0.3, "J": 0.3, "F": 0.3, "n_expressions": 3}},
    }
    report = ablation_report({**RESULTS, ROW_SENTENCE_BLIND: blind})
    rows = table_rows(report)
    assert rows[4] == [ROW_SENTENCE_BLIND, "41.0", "38.0", "36.0", "40.0"] and rows[9][0] == ROW_SENTENCE_BLIND
    assert ROW_NOTES[ROW_SENTENCE_BLIND] in report and ROW_NOTES[ROW_SENTENCE_BLIND] not in ablation_report(RESULTS)


def test_missing_values_print_as_a_dash_and_no_kinds_means_one_table() -> None:
    report = ablation_report({"a": {"box_iou": math.nan, "JF": 0.5, "J": 0.5, "F": 0.5}})
    assert table_rows(report)[1] == ["a", "-", "50.0", "50.0", "50.0"] and "Expression type" not in report
    with pytest.raises(ValueError):
        ablation_report({})


def test_writer_writes_the_report(tmp_path: Path) -> None:
    path = write_report(tmp_path / "out" / "report.md", RESULTS)
    assert path.read_text() == ablation_report(RESULTS)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["report.md"], "no temporary file is left behind"


@pytest.mark.parametrize("store", ["local", "bucket"])
def test_report_is_logged_to_mlflow(tmp_path: Path, store: str, request: pytest.FixtureRequest) -> None:
    """Written on disk or in a bucket (then logged from a local copy), the file and the logged artifact hold the report."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient(uri)
    experiment = client.create_experiment("report", artifact_location=str(tmp_path / "artifacts"))
    run_id = client.create_run(experiment).info.run_id
    target = tmp_path / "report.md" if store == "local" else f"{request.getfixturevalue('bucket')}/demo/report.md"
    path = write_report(target, RESULTS, run_id=run_id, tracking_uri=uri)
    assert str(path) == str(target) and path.read_text() == ablation_report(RESULTS)
    assert [a.path for a in client.list_artifacts(run_id)] == ["report.md"]
    logged = Path(client.download_artifacts(run_id, "report.md", str(tmp_path / "downloaded")))
    assert logged.read_text() == ablation_report(RESULTS)
