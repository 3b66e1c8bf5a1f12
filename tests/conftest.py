"""Shared fixtures: the real data beside the checkout, and a quiet, small torch."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import groprompt  # noqa: F401 - first: it makes torchvision (hence segment_anything) importable on CPU torch
from tests.helpers import save_pretrained, shared_data_dir


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.fail(f"{path}: the shared real data is missing (CI puts shared/ beside the checkout)")
    return path


@pytest.fixture(autouse=True, scope="session")
def _small_torch() -> None:
    torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """One torch thread for the test: many tiny ops (SAM 2's per-object steps) on a busy 2-core machine run tens of
    times slower with two threads, each op waiting for the other thread to be scheduled."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def sam_hq_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random HQ-SAM (``SAM_HQ_CONFIGS["tiny"]``) saved with its processor, as ``model.segmentor_weights`` names it."""
    from groprompt.models.sam_hq import random_sam_hq

    return save_pretrained(*random_sam_hq("tiny"), tmp_path_factory.mktemp("sam-hq"))


@pytest.fixture(scope="session")
def sam2_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random SAM 2 video model (``SAM2_CONFIGS["tiny"]``) saved with its processor."""
    from groprompt.models.sam2_video import random_sam2

    return save_pretrained(*random_sam2("tiny"), tmp_path_factory.mktemp("sam2"))


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3-compatible server (moto's standalone server) on loopback for the session, with the environment that
    boto3 and pyarrow read pointing at it (test credentials); the environment is restored afterwards."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    settings = {
        "AWS_ACCESS_KEY_ID": "groprompt-test-key-id",
        "AWS_SECRET_ACCESS_KEY": "groprompt-test-secret-9f2c",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    before = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    try:
        yield endpoint
    finally:
        server.stop()
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture
def bucket(s3_endpoint: str, request: pytest.FixtureRequest) -> str:
    """A new, empty bucket on the test server, as a URI (``s3://<name>``)."""
    import re
    import uuid

    import boto3

    name = f"t-{re.sub(r'[^a-z0-9]+', '-', request.node.name.lower())[:40].strip('-')}-{uuid.uuid4().hex[:8]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return f"s3://{name}"
