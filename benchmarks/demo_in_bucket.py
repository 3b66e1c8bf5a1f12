"""The demo twice: every location on local disk, then the generated dataset (``data.root``), shards, embeddings,
training runs (the sweep's too), MLflow's artifacts (``runtime.artifact_location``) and the demo's own records
(``--work``: stage records, evaluations, overlays, the table) in a bucket of a local S3-compatible server (moto's, on
127.0.0.1); prints how many objects each of those prefixes holds after the bucket run, whether the ablation tables and
the trained models' final metrics are the same, and both wall times.

    python benchmarks/demo_in_bucket.py                      # 40 videos of 4 frames, the demo's sweep
    python benchmarks/demo_in_bucket.py --videos 140 --frames 8

MLflow's backend store (SQLite) stays local in both runs: a tracking URI is a database or a server, not a location.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import boto3
from moto.server import ThreadedMotoServer

from groprompt.files import location

REPO = Path(__file__).resolve().parents[1]
BUCKET = "demo"
STORES = {  # configuration key -> its folder in each run's directory, or its prefix in the bucket
    "data.root": "data",
    "data.shards": "shards",
    "data.embeddings": "embeddings",
    "train.storage_path": "runs",
    "runtime.artifact_location": "mlflow-artifacts",
}
WORK = "work"  # the demo's --work, beside them


def run_demo(folder: Path, work: str, stores: dict[str, str], args: argparse.Namespace) -> float:
    """One demo run (its records in ``work``, its MLflow store in ``folder``); its wall time in seconds."""
    command = [sys.executable, "pipelines/demo.py", "--videos", str(args.videos), "--frames", str(args.frames), "--test-fraction", "0.25"]
    command += ["--work", work, f"runtime.tracking_uri=sqlite:///{folder / 'mlflow.db'}"]
    command += [f"{key}={value}" for key, value in stores.items()]
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def outcome(work: str) -> tuple[str, list[object]]:
    """The ablation table and the final metrics of both trained models and the sweep's rows, read from ``work``."""
    records = location(work) / "demo"
    trained = [json.loads((records / f"{name}.json").read_text())["metrics"] for name in ("train-demo-box-only", "train-demo-contrastive")]
    return (location(work) / "ablation.md").read_text(), [*trained, json.loads((records / "sweep.json").read_text())["rows"]]


def objects_under(prefixes: Iterable[str]) -> dict[str, int]:
    """How many objects the bucket holds under each prefix (pyarrow's empty folder markers, ``prefix/``, aside)."""
    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
    keys = [item["Key"] for page in pages for item in page.get("Contents", []) if not item["Key"].endswith("/")]
    return {prefix: sum(key.startswith(f"{prefix}/") for key in keys) for prefix in prefixes}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=40)
    parser.add_argument("--frames", type=int, default=4)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update(
        AWS_ACCESS_KEY_ID="demo-key",
        AWS_SECRET_ACCESS_KEY="demo-secret",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_ENDPOINT_URL=f"http://{host}:{port}",
    )
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    try:
        with tempfile.TemporaryDirectory() as folder:
            local, remote = Path(folder) / "local", Path(folder) / "bucket"
            works = str(local / WORK), f"s3://{BUCKET}/{WORK}"
            seconds = [
                run_demo(local, works[0], {key: str(local / name) for key, name in STORES.items()}, args),
                run_demo(remote, works[1], {key: f"s3://{BUCKET}/{name}" for key, name in STORES.items()}, args),
            ]
            (table, metrics), (bucket_table, bucket_metrics) = outcome(works[0]), outcome(works[1])
            counts = objects_under([*STORES.values(), WORK])
    finally:
        server.stop()
    print(
        f"demo on local disk: {seconds[0]:.0f} s; with data, shards, embeddings, runs, artifacts and records in a bucket: {seconds[1]:.0f} s"
    )
    print(f"objects in s3://{BUCKET} after the bucket run: " + ", ".join(f"{prefix}/ {count}" for prefix, count in counts.items()))
    print(f"ablation tables identical: {table == bucket_table}; final metrics and sweep rows identical: {metrics == bucket_metrics}")
    print("\n" + bucket_table)
    return 0 if table == bucket_table and metrics == bucket_metrics else 1


if __name__ == "__main__":
    sys.exit(main())
