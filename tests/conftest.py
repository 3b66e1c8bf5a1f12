"""Shared fixtures: the real data beside the checkout, and a quiet, small torch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """``../shared/data`` beside the checkout (override with GROPROMPT_SHARED_DATA)."""
    return Path(os.environ.get("GROPROMPT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.fail(f"{path}: the shared real data is missing (CI puts shared/ beside the checkout)")
    return path


@pytest.fixture(autouse=True, scope="session")
def _small_torch() -> None:
    torch.set_num_threads(min(2, os.cpu_count() or 1))
