"""MLflow: where runs go, run status, params, per-step metrics from a worker, and the loss-curve figure."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from groprompt.config import Config, flatten, replace
from groprompt.errors import ConfigError
from groprompt.files import Location, location, write_text_atomic


def resolve_tracking_uri(configured: str | None) -> str:
    """The configured URI, else $MLFLOW_TRACKING_URI, else a SQLite file in the working folder."""
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def with_tracking_uri(config: Config) -> Config:
    """The configuration with its tracking URI resolved here, so that workers elsewhere log to the same store."""
    return replace(config, **{"runtime.tracking_uri": resolve_tracking_uri(config.runtime.tracking_uri)})


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail at once, naming the URI, when an MLflow server does not answer its health check (local stores pass)."""
    if not uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as response:
            if response.status == 200:
                return
            reason = f"HTTP {response.status}"
    except (urllib.error.URLError, OSError) as error:
        reason = str(getattr(error, "reason", error))
    raise ConfigError(f"runtime.tracking_uri={uri}: the MLflow server does not answer ({reason}); start it or point to another")


def start_run(config: Config, run_name: str, parent_run_id: str | None = None, tags: dict[str, str] | None = None) -> str:
    """Create a run (a child when ``parent_run_id`` is given) with the resolved configuration as params."""
    import mlflow

    uri = resolve_tracking_uri(config.runtime.tracking_uri)
    check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.set_experiment(experiment_id=experiment_id(config.runtime.experiment, config.runtime.artifact_location))
    client = mlflow.MlflowClient()
    all_tags = dict(tags or {})
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    run = client.create_run(experiment.experiment_id, run_name=run_name, tags=all_tags)
    log_params(run.info.run_id, flatten(config), config.runtime.tracking_uri)
    return run.info.run_id


def experiment_id(name: str, artifact_location: str | None) -> str:
    """The id of experiment ``name`` in the current tracking store, created (its artifacts at ``artifact_location``,
    when given) if missing; an experiment that keeps its artifacts elsewhere than ``artifact_location`` is refused."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name, artifact_location=artifact_location)
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            experiment = client.get_experiment_by_name(name)  # another process created it meanwhile
    if artifact_location is not None and location(experiment.artifact_location) != location(artifact_location):
        raise ConfigError(
            f"runtime.artifact_location={artifact_location}: experiment {name!r} keeps its artifacts in "
            f"{experiment.artifact_location}; name another runtime.experiment, or leave runtime.artifact_location unset"
        )
    return experiment.experiment_id


def continue_or_start_run(config: Config, run_name: str, record: Location, parent_run_id: str | None = None) -> str:
    """The unfinished run recorded in ``record`` by an interrupted attempt (marked RUNNING again), else a new run
    (recorded there): a restarted training continues its MLflow run instead of splitting its history."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    if record.is_file():
        run_id = record.read_text().strip()
        client = MlflowClient(resolve_tracking_uri(config.runtime.tracking_uri))
        try:
            status = client.get_run(run_id).info.status
        except MlflowException:
            status = None  # another store, or a deleted run: start afresh
        if status in ("RUNNING", "FAILED", "KILLED"):
            client.update_run(run_id, status="RUNNING")
            return run_id
    run_id = start_run(config, run_name, parent_run_id=parent_run_id)
    write_text_atomic(record, run_id)
    return run_id


@contextmanager
def run_status(run_id: str, tracking_uri: str | None) -> Iterator[None]:
    """Mark the run FINISHED when the block completes, KILLED when it is interrupted (Ctrl-C), FAILED when it raises."""
    from mlflow import MlflowClient

    client = MlflowClient(resolve_tracking_uri(tracking_uri))
    try:
        yield
    except (KeyboardInterrupt, SystemExit):
        client.set_terminated(run_id, "KILLED")
        raise
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")


def log_params(run_id: str, params: dict[str, Any], tracking_uri: str | None) -> None:
    """Log params in batches (MLflow limits a batch to 100)."""
    from mlflow import MlflowClient
    from mlflow.entities import Param

    client = MlflowClient(resolve_tracking_uri(tracking_uri))
    items = [Param(key, str(value)) for key, value in sorted(params.items())]
    for start in range(0, len(items), 100):
        client.log_batch(run_id, params=items[start : start + 100])


class MetricLogger:
    """Logs metric dictionaries to one run, each call at the next step."""

    def __init__(self, run_id: str, tracking_uri: str | None) -> None:
        from mlflow import MlflowClient

        self.client = MlflowClient(resolve_tracking_uri(tracking_uri))
        self.run_id = run_id

    def log(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])


def epoch_history(run_id: str, tracking_uri: str | None) -> list[dict[str, float]]:
    """Per-epoch metrics of a run (``epoch_loss_*`` as ``loss_*``, ``val_*``); the last value wins on a retried epoch."""
    from mlflow import MlflowClient

    client = MlflowClient(resolve_tracking_uri(tracking_uri))
    names = [name for name in client.get_run(run_id).data.metrics if name.startswith(("epoch_loss_", "val_"))]
    rows: dict[int, dict[str, float]] = {}
    for name in names:
        for metric in sorted(client.get_metric_history(run_id, name), key=lambda m: m.timestamp):
            rows.setdefault(metric.step, {"epoch": float(metric.step)})[name.removeprefix("epoch_")] = metric.value
    return [rows[epoch] for epoch in sorted(rows)]


def log_loss_curve(run_id: str, history: list[dict[str, float]], tracking_uri: str | None, name: str = "loss_curve.png") -> None:
    """Plot per-epoch losses and validation box IoU, and log the figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from mlflow import MlflowClient

    figure, (losses, quality) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = list(range(1, len(history) + 1))
    for key in sorted({k for row in history for k in row if k.startswith("loss_")}):
        losses.plot(epochs, [row.get(key, float("nan")) for row in history], label=key, marker="o")
    losses.set(xlabel="epoch", ylabel="loss", yscale="log", title="training losses")
    losses.legend(fontsize=7)
    quality.plot(epochs, [row.get("val_box_iou", float("nan")) for row in history], marker="o", color="tab:green")
    quality.set(xlabel="epoch", ylabel="box IoU", title="validation box IoU", ylim=(0, 1))
    figure.tight_layout()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        figure.savefig(path, dpi=100)
        MlflowClient(resolve_tracking_uri(tracking_uri)).log_artifact(run_id, str(path))
    plt.close(figure)
