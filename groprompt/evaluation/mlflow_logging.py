"""An evaluation in MLflow: summary values as metric names, the settings as ``eval.*`` params, the outputs as artifacts."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from groprompt.errors import ConfigError

EVAL_SETTINGS = ("boxes", "segmentor", "split", "checkpoint")  # logged as eval.<setting>
ARTIFACT_FOLDER = "evaluation"
_BATCH = 100  # MLflow's limit on metrics per log_batch


def metric_name(key: str) -> str:
    """``key`` in the characters MLflow allows in a metric name (``P@0.5`` -> ``P_at_0.5``)."""
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in key.replace("@", "_at_"))


def flat_metrics(summary: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric summary values as MLflow metric names, nested groups joined by ``/`` (``P@0.5`` -> ``P_at_0.5``,
    ``by_kind/motion/JF``, ``davis_unsupervised/anno_0/JF``); NaN left out."""
    metrics = {}
    for key, value in summary.items():
        name = prefix + metric_name(key)
        if isinstance(value, Mapping):
            metrics.update(flat_metrics(value, f"{name}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            metrics[name] = float(value)
    return metrics


def eval_params(settings: Mapping[str, Any]) -> dict[str, str]:
    """The ``eval.*`` params of an evaluation's settings (a summary, or the stage's arguments)."""
    return {f"eval.{key}": str(settings[key]) for key in EVAL_SETTINGS}


def unlogged_params(run_id: str, params: Mapping[str, str], tracking_uri: str) -> dict[str, str]:
    """The ``params`` that the run does not hold yet.

    ConfigError when it holds one with another value: an evaluation with other settings was logged into that run,
    and this one's metrics would be filed under its settings.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        held = MlflowClient(tracking_uri).get_run(run_id).data.params
    except MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise ConfigError(f"MLflow run {run_id}: not found in {tracking_uri}") from error
    conflicts = [f"{key}={held[key]!r} (this evaluation: {value!r})" for key, value in params.items() if key in held and held[key] != value]
    if conflicts:
        raise ConfigError(f"MLflow run {run_id} already holds an evaluation with {', '.join(conflicts)}; evaluate into another run")
    return {key: value for key, value in params.items() if key not in held}


def log_evaluation(run_id: str, summary: Mapping[str, Any], metrics_path: Path, summary_path: Path, tracking_uri: str) -> None:
    """Log the summary metrics (``eval/<name>``), the settings the run does not hold yet (``eval.*``), the
    per-expression parquet and the summary JSON (under ``evaluation/``)."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    params = unlogged_params(run_id, eval_params(summary), tracking_uri)
    client = MlflowClient(tracking_uri)
    now = int(time.time() * 1000)
    metrics = [Metric(f"eval/{name}", value, now, 0) for name, value in flat_metrics(summary).items()]
    for start in range(0, len(metrics), _BATCH):
        client.log_batch(run_id, metrics=metrics[start : start + _BATCH])
    if params:
        client.log_batch(run_id, params=[Param(key, value) for key, value in params.items()])
    client.log_artifact(run_id, str(metrics_path), artifact_path=ARTIFACT_FOLDER)
    client.log_artifact(run_id, str(summary_path), artifact_path=ARTIFACT_FOLDER)
