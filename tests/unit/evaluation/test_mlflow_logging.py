"""An evaluation in MLflow: metric names, and the eval.* params logged once, never overwritten by other settings."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from groprompt.errors import ConfigError
from groprompt.evaluation.aggregate import merge_partials, summarize
from groprompt.evaluation.mlflow_logging import flat_metrics, log_evaluation


def test_flat_metrics_name_precision_per_kind_and_annotator_values(partial_row: Callable[..., dict[str, Any]]) -> None:
    shapes = summarize(merge_partials([partial_row("v1", "0", "motion", 0.2, [(2, 10)], "refshapes")]))
    a2d = summarize(
        merge_partials(
            [partial_row("a", "0", None, 0.5, [(6, 10)], "a2d-sentences"), partial_row("b", "0", None, 0.5, [(1, 10)], "a2d-sentences")]
        )
    )
    davis = {"anno_0": {"J": 0.5, "F": 0.7, "JF": 0.6}, "mean": {"J": 0.5, "F": 0.7, "JF": 0.6}, "n_sequences": 8}
    metrics = flat_metrics({**a2d, "by_kind": shapes["by_kind"], "davis_unsupervised": davis})
    assert metrics["P_at_0.5"] == 0.5 and "by_kind/motion/JF" in metrics and "dataset" not in metrics
    assert metrics["davis_unsupervised/anno_0/F"] == 0.7 and metrics["davis_unsupervised/mean/JF"] == 0.6
    assert metrics["davis_unsupervised/n_sequences"] == 8.0


def test_eval_params_are_logged_once_and_other_settings_are_refused(tmp_path: Path, partial_row: Callable[..., dict[str, Any]]) -> None:
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("eval")).info.run_id
    summary = {
        **summarize(merge_partials([partial_row("v1", "0", "motion", 0.2, [(2, 10)], "refshapes")])),
        "boxes": "oracle",
        "segmentor": "box",
        "split": "valid",
        "checkpoint": None,
    }
    (tmp_path / "metrics.parquet").write_bytes(b"")
    (tmp_path / "summary.json").write_text(json.dumps(summary))

    def log(settings: dict[str, Any]) -> None:
        log_evaluation(run_id, {**summary, **settings}, tmp_path / "metrics.parquet", tmp_path / "summary.json", uri)

    log({})
    log({})  # the same evaluation again: its params are already there
    run = client.get_run(run_id)
    assert run.data.params == {"eval.boxes": "oracle", "eval.segmentor": "box", "eval.split": "valid", "eval.checkpoint": "None"}
    assert run.data.metrics["eval/JF"] == summary["JF"] and run.data.metrics["eval/by_kind/motion/JF"] == summary["JF"]
    with pytest.raises(ConfigError, match="eval.segmentor='box'"):
        log({"segmentor": "grabcut", "JF": 0.9})
    assert client.get_run(run_id).data.metrics["eval/JF"] == summary["JF"]  # nothing of the refused evaluation logged
    with pytest.raises(ConfigError, match="not found"):
        log_evaluation("0" * 32, summary, tmp_path / "metrics.parquet", tmp_path / "summary.json", uri)
