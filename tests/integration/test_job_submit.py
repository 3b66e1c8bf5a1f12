"""`ray job submit` of pipelines/train.py to a loopback Ray head with token authentication, tracked by a real
MLflow server: both started and stopped with infra/local/services.sh (state under tmp_path, free ports)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from groprompt.data.refshapes import RefShapesSpec, write_refshapes
from groprompt.files import Location, location
from groprompt.models.sam import FrozenSam
from tests.helpers import REPO_ROOT, bucket_contents, shard_and_embed

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

SERVICES = REPO_ROOT / "infra" / "local" / "services.sh"
# Never uploaded with --working-dir (Ray also honours .gitignore, which covers .venv/, work/, mlruns/...).
# Patterns are gitignore-style: anchor them ("/data", not "data", which would also drop conf/data/).
UPLOAD_EXCLUDES = ["/.git", "/.venv", "/work", "/data", "/mlruns", "/mlartifacts", "/*.db", "/.pytest_cache"]


def venv_tool(name: str) -> str:
    """The tool beside the running Python (the project's venv), else the one on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else (shutil.which(name) or name)


def prepare_refshapes(data: Path, store: Location) -> None:
    """A tiny RefShapes set at ``data``, its frame shards and tiny-SAM embeddings written to ``store`` (as the stages
    write them, in this process)."""
    write_refshapes(data, RefShapesSpec(videos=4, frames=8, size=256, seed=0), valid_fraction=0.25, progress=False)
    sam = FrozenSam.from_name("tiny", None, 0)
    for split in ("train", "valid"):
        shard_and_embed(data, split, store / "shards", store / "embeddings", sam, window=8, max_side=256, shard_bytes=2**20)


def read_env_file(path: Path) -> dict[str, str]:
    """The `export NAME=value` lines of the services' env.sh."""
    found = {}
    for line in path.read_text().splitlines():
        match = re.match(r"export (\w+)=(\S+)", line)
        if match:
            found[match.group(1)] = match.group(2)
    return found


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is gone for our purposes
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


class Services:
    """The loopback Ray head and MLflow server, as infra/local/services.sh started them, with the MLflow artifacts in
    ``bucket`` (``s3://<bucket>/mlartifacts``) on the test S3 server."""

    def __init__(self, state: Path, env: dict[str, str], bucket: str) -> None:
        self.state, self.env, self.bucket = state, env, bucket
        self.client = read_env_file(state / "env.sh")
        self.ray_pid = int((state / "ray" / "head.pid").read_text())
        self.mlflow_pid = int((state / "mlflow" / "server.pid").read_text())

    @property
    def job_env(self) -> dict[str, str]:
        """A client environment: token auth on, the token file, and no stray cluster address."""
        env = {k: v for k, v in self.env.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN")}
        env.update(
            RAY_AUTH_MODE="token",
            RAY_AUTH_TOKEN_PATH=self.client["RAY_AUTH_TOKEN_PATH"],
            RAY_API_SERVER_ADDRESS=self.client["RAY_API_SERVER_ADDRESS"],
        )
        return env


def run_services(command: str, env: dict[str, str], timeout: float = 150) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SERVICES), command], env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT)


@pytest.fixture(scope="module")
def services(s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """Both services for this module, their environment holding the test S3 server's (Ray workers and the MLflow
    server reach the bucket with it); stopped by down.sh (and checked gone) even when a test fails."""
    import boto3

    state = tmp_path_factory.mktemp("services")
    bucket = f"t-job-submit-{os.getpid()}-{int(time.time())}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "RAY_API_SERVER", "RAY_AUTH", "MLFLOW_TRACKING"))}
    env.update(
        GROPROMPT_MLFLOW_ARTIFACTS=f"s3://{bucket}/mlartifacts",
        MLFLOW_S3_ENDPOINT_URL=s3_endpoint,
        GROPROMPT_SERVICES_DIR=str(state),
        GROPROMPT_RAY_DASHBOARD_PORT="0",
        GROPROMPT_MLFLOW_PORT="0",
        GROPROMPT_RAY_NUM_CPUS="2",
        GROPROMPT_VENV=str(Path(sys.executable).parent.parent),
    )
    try:
        # Ray and MLflow start in parallel; each records its PID before waiting for readiness.
        starts = [
            subprocess.Popen(
                ["bash", str(SERVICES), "up", name], env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            for name in ("ray", "mlflow")
        ]
        outputs = [start.communicate(timeout=150)[0] for start in starts]
        for start, output in zip(starts, outputs):
            assert start.returncode == 0, output
        assert "token auth on" in outputs[0] and "HTTP 401" in outputs[0], outputs[0]
        status = run_services("status", env)
        assert status.returncode == 0, status.stdout + status.stderr
        run_services("env", env)
        yield Services(state, env, bucket)
    finally:
        pid_files = [state / "ray" / "head.pid", state / "mlflow" / "server.pid"]
        pids = [int(p.read_text()) for p in pid_files if p.exists()]
        stopped = run_services("down", env, timeout=120)
        for pid in pids:  # last resort, should down.sh have failed: the recorded process groups only
            if pid_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        deadline = time.monotonic() + 10
        while any(pid_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [pid for pid in pids if pid_alive(pid)], "recorded service processes survived down.sh"
        assert not any(p.exists() for p in pid_files)


def test_services_are_idempotent_and_require_the_token(services: Services) -> None:
    again = run_services("up", services.env)
    assert again.returncode == 0 and "already running" in again.stdout, again.stdout + again.stderr
    assert int((services.state / "ray" / "head.pid").read_text()) == services.ray_pid
    token_file = Path(services.client["RAY_AUTH_TOKEN_PATH"])
    assert token_file.stat().st_mode & 0o077 == 0  # the token is private to the user
    # Without the token the job API refuses the client.
    anonymous = {k: v for k, v in services.job_env.items() if not k.startswith("RAY_AUTH")}
    anonymous["RAY_AUTH_MODE"] = "disabled"
    listing = subprocess.run([venv_tool("ray"), "job", "list"], env=anonymous, capture_output=True, text=True, timeout=60)
    assert listing.returncode != 0, listing.stdout
    listing = subprocess.run([venv_tool("ray"), "job", "list"], env=services.job_env, capture_output=True, text=True, timeout=60)
    assert listing.returncode == 0, listing.stdout + listing.stderr


def test_job_submit_trains_from_a_bucket_into_a_bucket_and_no_credential_is_written(services: Services, tmp_path: Path) -> None:
    """Shards, embeddings, Ray Train's storage and the MLflow artifacts all in one bucket; afterwards neither the
    access key id nor the secret appears in the job's output, the server's log, the run's params and tags, any object
    in the bucket or any file written here."""
    store = f"s3://{services.bucket}"
    prepare_refshapes(tmp_path / "data", location(store))
    tracking_uri = services.client["MLFLOW_TRACKING_URI"]
    entrypoint = [
        "python",
        "pipelines/train.py",
        "--config",
        "conf/tiny.yaml",
        f"data.root={tmp_path / 'data'}",
        f"data.shards={store}/shards",
        f"data.embeddings={store}/embeddings",
        "train.epochs=1",
        "train.num_workers=1",
        "train.batch_size=8",
        "train.name=job-submit",
        f"train.storage_path={store}/runs",
        f"runtime.tracking_uri={tracking_uri}",
    ]
    for attempt in range(2):
        submission_id = f"groprompt-test-{os.getpid()}-{int(time.time())}-{attempt}"
        submit = subprocess.run(
            [
                venv_tool("ray"),
                "job",
                "submit",
                "--address",
                services.client["RAY_API_SERVER_ADDRESS"],
                "--submission-id",
                submission_id,
                "--working-dir",
                str(REPO_ROOT),
                "--runtime-env-json",
                json.dumps({"excludes": UPLOAD_EXCLUDES}),
                "--",
                *entrypoint,
            ],
            env=services.job_env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        logs = submit.stdout + submit.stderr
        status = subprocess.run(
            [venv_tool("ray"), "job", "status", submission_id], env=services.job_env, capture_output=True, text=True, timeout=60
        )
        # The CLI hashes the working dir twice; a file changing in between (an editor, another process writing
        # into the checkout) makes the uploaded package differ from the one the job asks for. Retry that once.
        if "Failed to download runtime_env file package" not in logs:
            break
    assert "succeeded" in (status.stdout + status.stderr).lower(), logs[-6000:] + status.stdout + status.stderr
    found = re.search(r"finished: run (\w+)", logs)
    assert found, logs[-6000:]

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    run = client.get_run(found.group(1))
    assert run.data.params["train.num_workers"] == "1"
    for name in ("loss_total", "val_box_iou"):
        assert client.get_metric_history(run.info.run_id, name), name
    artifacts = {artifact.path for artifact in client.list_artifacts(run.info.run_id)}
    assert "checkpoint" in artifacts, artifacts
    assert client.list_artifacts(run.info.run_id, "checkpoint")
    # Artifacts went through the server into its destination in the bucket, not onto the client's disk.
    assert run.info.artifact_uri.startswith("mlflow-artifacts:"), run.info.artifact_uri
    objects = bucket_contents(services.bucket)
    logged = [key for key in objects if key.startswith("mlartifacts/") and key.endswith("/checkpoint/checkpoint.pt")]
    assert len(logged) == 1, sorted(objects)
    stored = [key for key in objects if key.startswith("runs/job-submit/") and key.endswith("/checkpoint.pt")]
    assert stored and objects[logged[0]] in [objects[key] for key in stored]  # the final Ray Train checkpoint, logged

    secrets = [os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]]
    written = {str(path): path.read_bytes() for folder in (tmp_path, services.state) for path in folder.rglob("*") if path.is_file()}
    texts = {
        "job output": logs,
        "mlflow params and tags": json.dumps([run.data.params, run.data.tags]),
        **{f"{store}/{key}": body.decode("latin-1") for key, body in objects.items()},
        **{name: body.decode("latin-1") for name, body in written.items()},
    }
    assert str(services.state / "mlflow" / "server.log") in texts
    leaks = [(name, secret[:6]) for name, text in texts.items() for secret in secrets if secret in text]
    assert not leaks, leaks
