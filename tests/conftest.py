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
