"""MLflow tracking against a real SQLite store: params, parent tags, run status, per-step metrics, epoch history, and
an experiment's artifacts in a bucket (moto's S3 server)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric

from groprompt.config import Config, replace
from groprompt.errors import ConfigError
from groprompt.tracking import (
    MetricLogger,
    epoch_history,
    log_loss_curve,
    log_params,
    resolve_tracking_uri,
    run_status,
    start_run,
    with_tracking_uri,
)
from tests.helpers import bucket_contents, empty_store, restored_mlflow_globals, tracked_config

EXPERIMENT = "unit-tracking"


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Config]:
    """The default configuration logging to a fresh store whose experiment keeps its artifacts in tmp."""
    with tracked_config(tmp_path_factory, EXPERIMENT, Config()) as config:
        yield config


def client_of(config: Config) -> MlflowClient:
    return MlflowClient(config.runtime.tracking_uri)


def expected_params(config: Config) -> dict[str, str]:
    """``section.key`` -> ``str(value)`` for every field, walked from the dataclasses themselves."""
    params = {}
    for section in dataclasses.fields(config):
        values = getattr(config, section.name)
        for field in dataclasses.fields(values):
            params[f"{section.name}.{field.name}"] = str(getattr(values, field.name))
    return params


def test_start_run_logs_the_flattened_configuration_as_params(config: Config) -> None:
    run_id = start_run(config, "unit-run")
    run = client_of(config).get_run(run_id)
    assert run.info.run_name == "unit-run"
    assert run.info.status == "RUNNING"
    assert run.info.experiment_id == client_of(config).get_experiment_by_name(EXPERIMENT).experiment_id
    assert run.data.params == expected_params(config)
    # a few by hand, as a reader of the MLflow UI sees them
    assert run.data.params["train.lr"] == "0.0001"
    assert run.data.params["model.sam_checkpoint"] == "None"
    assert run.data.params["sweep.lambda_f"] == "(0.0, 0.01)"
    assert run.data.params["runtime.tracking_uri"] == config.runtime.tracking_uri
    assert "mlflow.parentRunId" not in run.data.tags


def test_a_child_run_is_tagged_with_its_parent(config: Config) -> None:
    parent = start_run(config, "parent")
    tags = {"trial": "3"}
    child = start_run(replace(config, **{"loss.lambda_f": 0.5}), "child", parent_run_id=parent, tags=tags)
    run = client_of(config).get_run(child)
    assert run.data.tags["mlflow.parentRunId"] == parent
    assert run.data.tags["trial"] == "3"
    assert run.data.params["loss.lambda_f"] == "0.5"
    assert tags == {"trial": "3"}  # the caller's dictionary is not changed
    experiment = client_of(config).get_experiment_by_name(EXPERIMENT).experiment_id
    children = client_of(config).search_runs([experiment], filter_string=f"tags.mlflow.parentRunId = '{parent}'")
    assert [found.info.run_id for found in children] == [child]


def test_a_new_experiment_keeps_its_artifacts_in_the_configured_bucket(
    bucket: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    import mlflow

    with restored_mlflow_globals():
        uri = empty_store(tmp_path_factory, tmp_path)
        settings = {"runtime.tracking_uri": uri, "runtime.experiment": "in-bucket", "runtime.artifact_location": f"{bucket}/mlflow/"}
        config = replace(Config(), **settings)
        run_id = start_run(config, "bucketed")
        artifact = tmp_path / "table.bin"
        artifact.write_bytes(b"artifact \x00\x01 bytes")
        MlflowClient(uri).log_artifact(run_id, str(artifact), artifact_path="tables")
        assert bucket_contents(bucket.removeprefix("s3://")) == {f"mlflow/{run_id}/artifacts/tables/table.bin": artifact.read_bytes()}
        back = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="tables/table.bin", tracking_uri=uri, dst_path=str(tmp_path / "back")
        )
        assert Path(back).read_bytes() == artifact.read_bytes()
        again = start_run(config, "again")  # the experiment exists, at the configured location (the trailing / aside)
        assert MlflowClient(uri).get_run(again).info.experiment_id == MlflowClient(uri).get_run(run_id).info.experiment_id


def test_an_experiment_that_keeps_its_artifacts_elsewhere_is_refused(config: Config, tmp_path: Path) -> None:
    experiment = client_of(config).get_experiment_by_name(EXPERIMENT)
    runs = len(client_of(config).search_runs([experiment.experiment_id]))
    assert experiment.artifact_location.startswith("file://")  # tracked_config made it with a file URI
    same_folder = experiment.artifact_location.removeprefix("file://")
    same = start_run(replace(config, **{"runtime.artifact_location": same_folder}), "same")  # a plain path names the same folder
    assert client_of(config).get_run(same).info.experiment_id == experiment.experiment_id
    elsewhere = tmp_path / "elsewhere"
    with pytest.raises(ConfigError) as refused:
        start_run(replace(config, **{"runtime.artifact_location": str(elsewhere)}), "refused")
    assert str(refused.value) == (
        f"runtime.artifact_location={elsewhere}: experiment {EXPERIMENT!r} keeps its artifacts in {experiment.artifact_location}; "
        "name another runtime.experiment, or leave runtime.artifact_location unset"
    )
    assert len(client_of(config).search_runs([experiment.experiment_id])) == runs + 1, "no run for the refused configuration"


def test_log_params_logs_more_than_one_batch(config: Config) -> None:
    """MLflow refuses more than 100 params in one batch; 250 go in three."""
    run_id = client_of(config).create_run(client_of(config).get_experiment_by_name(EXPERIMENT).experiment_id).info.run_id
    params = {f"p{index:03d}": index * 1.5 for index in range(250)}
    log_params(run_id, params, config.runtime.tracking_uri)
    logged = client_of(config).get_run(run_id).data.params
    assert len(logged) == 250
    assert logged["p000"] == "0.0" and logged["p001"] == "1.5" and logged["p249"] == "373.5"


def test_run_status_marks_a_completed_block_finished(config: Config) -> None:
    run_id = start_run(config, "finishes")
    with run_status(run_id, config.runtime.tracking_uri):
        assert client_of(config).get_run(run_id).info.status == "RUNNING"
    info = client_of(config).get_run(run_id).info
    assert info.status == "FINISHED" and info.end_time is not None


@pytest.mark.parametrize("error,status", [(ValueError("bad epoch"), "FAILED"), (KeyboardInterrupt(), "KILLED"), (SystemExit(1), "KILLED")])
def test_run_status_marks_a_raising_block_failed_or_killed_and_re_raises(config: Config, error: BaseException, status: str) -> None:
    run_id = start_run(config, "fails")
    with pytest.raises(type(error)), run_status(run_id, config.runtime.tracking_uri):
        raise error
    info = client_of(config).get_run(run_id).info
    assert info.status == status and info.end_time is not None


def test_metric_logger_logs_each_call_at_its_step(config: Config) -> None:
    run_id = start_run(config, "steps")
    logger = MetricLogger(run_id, config.runtime.tracking_uri)
    logger.log({"loss_l1": 0.5, "loss_total": 2}, step=0)
    logger.log({"loss_l1": 0.25}, step=1)
    logger.log({"loss_l1": 0.125}, step=7)
    client = client_of(config)
    history = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "loss_l1"))
    assert history == [(0, 0.5), (1, 0.25), (7, 0.125)]
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "loss_total")] == [(0, 2.0)]


def test_epoch_history_renames_epoch_losses_and_keeps_the_retried_epoch(config: Config) -> None:
    run_id = start_run(config, "history")
    logger = MetricLogger(run_id, config.runtime.tracking_uri)
    for step in range(6):  # per-step losses are not epochs
        logger.log({"loss_total": 10.0 + step, "loss_l1": 5.0}, step=step)
    logger.log({"epoch_loss_total": 3.0, "epoch_loss_l1": 1.0, "val_box_iou": 0.1}, step=0)
    logger.log({"epoch_loss_total": 2.0, "epoch_loss_l1": 0.75, "val_box_iou": 0.2}, step=1)
    time.sleep(0.01)  # the retried epoch 1 is logged later (timestamps are in milliseconds)
    logger.log({"epoch_loss_total": 1.5, "epoch_loss_l1": 0.5, "val_box_iou": 0.3}, step=1)
    time.sleep(0.01)
    logger.log({"epoch_loss_total": 1.0, "val_box_iou": 0.4}, step=2)
    assert epoch_history(run_id, config.runtime.tracking_uri) == [
        {"epoch": 0.0, "loss_total": 3.0, "loss_l1": 1.0, "val_box_iou": 0.1},
        {"epoch": 1.0, "loss_total": 1.5, "loss_l1": 0.5, "val_box_iou": 0.3},
        {"epoch": 2.0, "loss_total": 1.0, "val_box_iou": 0.4},
    ]


def test_epoch_history_takes_the_latest_timestamp_not_the_latest_insert(config: Config) -> None:
    run_id = start_run(config, "timestamps")
    client = client_of(config)
    client.log_batch(run_id, metrics=[Metric("epoch_loss_total", 0.5, 2_000, 0)])  # the retry, inserted first
    client.log_batch(run_id, metrics=[Metric("epoch_loss_total", 9.0, 1_000, 0)])  # the first attempt
    assert epoch_history(run_id, config.runtime.tracking_uri) == [{"epoch": 0.0, "loss_total": 0.5}]


def test_epoch_history_of_a_run_without_epochs_is_empty(config: Config) -> None:
    run_id = start_run(config, "empty")
    MetricLogger(run_id, config.runtime.tracking_uri).log({"loss_total": 1.0}, step=0)
    assert epoch_history(run_id, config.runtime.tracking_uri) == []


def test_log_loss_curve_logs_a_png(config: Config, tmp_path: Path) -> None:
    run_id = start_run(config, "curve")
    history = [{"epoch": 0.0, "loss_total": 3.0, "val_box_iou": 0.1}, {"epoch": 1.0, "loss_total": 2.0, "val_box_iou": 0.3}]
    log_loss_curve(run_id, history, config.runtime.tracking_uri)
    assert [a.path for a in client_of(config).list_artifacts(run_id)] == ["loss_curve.png"]
    local = client_of(config).download_artifacts(run_id, "loss_curve.png", str(tmp_path))
    assert Path(local).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resolve_tracking_uri_prefers_the_configuration_then_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking:5000")
    assert resolve_tracking_uri("sqlite:///configured.db") == "sqlite:///configured.db"
    assert resolve_tracking_uri(None) == "http://tracking:5000"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.chdir(tmp_path)
    assert resolve_tracking_uri(None) == f"sqlite:///{tmp_path}/mlflow.db"


def test_with_tracking_uri_fixes_the_uri_and_nothing_else(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking:5000")
    resolved = with_tracking_uri(Config())
    assert resolved.runtime.tracking_uri == "http://tracking:5000"
    assert dataclasses.replace(resolved, runtime=Config().runtime) == Config()


def test_an_unreachable_mlflow_server_is_named_at_once() -> None:
    import socket

    from groprompt.tracking import check_reachable

    with socket.socket() as probe:  # a loopback port that nothing listens on once the probe closes
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConfigError, match=rf"runtime.tracking_uri=http://127.0.0.1:{port}: the MLflow server does not answer"):
        check_reachable(f"http://127.0.0.1:{port}", timeout=2.0)
    check_reachable("sqlite:///anything.db")  # a local store needs no server


def test_an_interrupted_run_is_continued_and_a_finished_one_is_not(tmp_path: Path) -> None:
    from groprompt.tracking import continue_or_start_run

    config = replace(Config(), **{"runtime.tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"})
    record = tmp_path / "runs" / "name" / "mlflow-run-id"
    first = continue_or_start_run(config, "name", record)
    assert record.read_text() == first
    client = MlflowClient(config.runtime.tracking_uri)
    client.set_terminated(first, "FAILED")  # the driver was interrupted
    assert continue_or_start_run(config, "name", record) == first
    assert client.get_run(first).info.status == "RUNNING"
    client.set_terminated(first, "FINISHED")
    second = continue_or_start_run(config, "name", record)
    assert second != first and record.read_text() == second
