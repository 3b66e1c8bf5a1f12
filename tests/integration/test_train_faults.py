"""Training stopped from outside resumes exactly: Ctrl-C of the driver and then a driver killed outright (SIGKILL),
one after the other in one run kept in a bucket, and a lost node (on local disk).

Each interrupted run must end at the uninterrupted run's final metrics (``learned``, same seed) within 1e-6, in one
MLflow run, with no checkpoint folder Ray Train never registered left behind. What a driver killed while saving can
leave behind, a checkpoint folder written but never registered, is planted besides (killing it at that very moment
cannot be timed).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import mlflow
import pytest
import yaml

from groprompt.config import Config, replace, to_dict
from groprompt.files import Location, location, write_bytes_atomic
from groprompt.stages.train import train
from tests.helpers import REPO_ROOT, registered_epochs

pytestmark = pytest.mark.slow

FINAL_METRICS = ("loss_total", "loss_l1", "loss_giou", "val_box_iou")
STARTUP_TIMEOUT = 600  # seconds a driver may take to register a checkpoint on a loaded 2-core machine


def write_config(config: Config, path: Path) -> Path:
    path.write_text(yaml.safe_dump(json.loads(json.dumps(to_dict(config)))))
    return path


def stop_after_epoch(command: list[str], run_folder: Location, epoch: int, signal_number: int) -> subprocess.CompletedProcess[str]:
    """Run ``command`` until Ray Train has registered the checkpoint of ``epoch``, then send it ``signal_number``."""
    driver = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while epoch not in registered_epochs(run_folder):
        assert driver.poll() is None, driver.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no checkpoint registered in time"
        time.sleep(0.2)
    driver.send_signal(signal_number)
    out, err = driver.communicate(timeout=300)
    return subprocess.CompletedProcess(command, driver.returncode, out, err)


def driver_lines(stderr: str) -> str:
    """The driver's own stderr: without the lines Ray forwards from its actors and workers ("(Name pid=...)")."""
    return "\n".join(line for line in stderr.splitlines() if not re.match(r"(\x1b\[\d+m)?\(\w+ pid=\d+", line))


def assert_same_final_metrics(history: list[dict[str, float]], reference: list[dict[str, float]]) -> None:
    assert [int(row["epoch"]) for row in history] == [int(row["epoch"]) for row in reference]
    for key in FINAL_METRICS:
        assert history[-1][key] == pytest.approx(reference[-1][key], rel=1e-6), key


def runs_named(config: Config, name: str) -> list[Any]:
    client = mlflow.MlflowClient(config.runtime.tracking_uri)
    experiments = [experiment.experiment_id for experiment in client.search_experiments()]
    return client.search_runs(experiments, filter_string=f"attributes.run_name = '{name}'")


def test_ctrl_c_then_sigkill_of_the_rerun_then_a_rerun_ends_where_the_uninterrupted_run_ended(
    refshapes_config: Config, learned: dict[str, Any], tmp_path: Path, bucket: str
) -> None:
    """One run with ``train.storage_path`` in a bucket (checkpoints, the run record and Ray Train's snapshot all in
    object storage): its driver is stopped by Ctrl-C after epoch 0, the rerun's driver is killed outright after
    epoch 1, and a third run finishes it."""
    name = "stopped"
    config = replace(refshapes_config, **{"train.name": name, "train.storage_path": f"{bucket}/runs"})
    run_folder = location(bucket) / "runs" / name
    import ray

    # the drivers join the test session's Ray (as `ray job submit` drivers join a cluster): no Ray start of their own
    address = ray.get_runtime_context().gcs_address
    config_file = write_config(config, tmp_path / "stopped.yaml")
    command = [sys.executable, "pipelines/train.py", "--address", address, "--config", str(config_file)]

    interrupted = stop_after_epoch(command, run_folder, epoch=0, signal_number=signal.SIGINT)
    errors = [line for line in interrupted.stderr.splitlines() if line.startswith("interrupted:")]
    assert interrupted.returncode == 130 and len(errors) == 1, interrupted.stderr[-3000:]
    assert "run the same command again to resume" in errors[0] and "Traceback" not in driver_lines(interrupted.stderr)
    (run,) = runs_named(config, name)
    assert run.info.status == "KILLED"

    killed = stop_after_epoch(command, run_folder, epoch=1, signal_number=signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    (run,) = runs_named(config, name)
    assert run.info.status == "RUNNING"  # no goodbye: MLflow never heard

    partial = run_folder / "checkpoint_2099-01-01_00-00-00.000000"  # as a driver killed while saving leaves it
    write_bytes_atomic(partial / "checkpoint.pt", b"\x80\x02")

    resumed = train(config)
    assert_same_final_metrics(resumed["history"], learned["history"])
    (run,) = runs_named(config, name)
    assert run.info.run_id == resumed["run_id"] and run.info.status == "FINISHED"
    assert not partial.exists()


def test_a_lost_node_is_replaced_and_the_run_ends_where_the_uninterrupted_run_ended(
    refshapes_config: Config, learned: dict[str, Any], tmp_path: Path
) -> None:
    config = replace(refshapes_config, **{"train.name": "node-lost", "train.max_failures": 1})
    command = [sys.executable, "-m", "tests.integration.node_loss", str(write_config(config, tmp_path / "node-lost.yaml"))]
    run = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    outcome = json.loads(run.stdout.splitlines()[-1])
    (killed, at_epochs), (replaced, _) = outcome["events"]
    assert (killed, replaced) == ("killed", "replaced") and max(at_epochs) < 2  # the node was lost before the end
    assert_same_final_metrics(outcome["history"], learned["history"])
