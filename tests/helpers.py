"""Helpers that several test modules share (fixtures live in conftest.py files)."""

from __future__ import annotations

import importlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DAVIS_VIDEOS = ("blackswan", "libby")


def shared_data_dir() -> Path:
    """``../shared/data`` beside the checkout (override with GROPROMPT_SHARED_DATA)."""
    return Path(os.environ.get("GROPROMPT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def mini_davis(shared_data: Path, tmp_path: Path, videos: tuple[str, ...] = DAVIS_VIDEOS) -> Path:
    """A copy of some ref-davis-mini videos in the Ref-DAVIS17 layout (so tests may damage it)."""
    source = shared_data / "ref-davis-mini"
    root = tmp_path / "davis"
    meta = json.loads((source / "meta_expressions/valid/meta_expressions.json").read_text())
    meta["videos"] = {v: meta["videos"][v] for v in videos}
    (root / "meta_expressions/valid").mkdir(parents=True)
    (root / "meta_expressions/valid/meta_expressions.json").write_text(json.dumps(meta))
    for video in videos:
        for kind in ("JPEGImages", "Annotations"):
            shutil.copytree(source / "valid" / kind / video, root / "valid" / kind / video)
    return root


@contextmanager
def restored_mlflow_globals() -> Iterator[None]:
    """``start_run`` sets MLflow's process-wide tracking URI and active experiment (and their environment variables):
    put them back so that later tests do not log into this module's deleted store."""
    import mlflow

    fluent = importlib.import_module("mlflow.tracking.fluent")
    saved_env = {name: os.environ.get(name) for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID")}
    saved_experiment = getattr(fluent, "_active_experiment_id", None)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved_env["MLFLOW_TRACKING_URI"])  # None unsets it
        fluent._active_experiment_id = saved_experiment
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def empty_store(tmp_path_factory: pytest.TempPathFactory, folder: Path) -> str:
    """A migrated, empty SQLite store in ``folder``: copied from one made once per session (migrations take seconds)."""
    import mlflow

    template = tmp_path_factory.getbasetemp() / "mlflow-template" / "mlflow.db"
    if not template.exists():
        template.parent.mkdir(exist_ok=True)
        mlflow.MlflowClient(f"sqlite:///{template}").search_experiments()
    shutil.copyfile(template, folder / "mlflow.db")
    return f"sqlite:///{folder / 'mlflow.db'}"
