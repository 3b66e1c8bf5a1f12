"""Shared fixtures: the real data beside the checkout, and a quiet, small torch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import groprompt  # noqa: F401 - first: it makes torchvision (hence segment_anything) importable on CPU torch
from tests.helpers import shared_data_dir


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.fail(f"{path}: the shared real data is missing (CI puts shared/ beside the checkout)")
    return path


@pytest.fixture(autouse=True, scope="session")
def _small_torch() -> None:
    torch.set_num_threads(min(2, os.cpu_count() or 1))
