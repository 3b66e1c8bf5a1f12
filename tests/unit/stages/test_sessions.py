"""The Ray sessions: a Ray Tune trial trains on a GPU only when ``train.use_gpu`` asks for one and the trial sees one;
a resume whose latest checkpoint cannot be read falls back to an earlier registered one."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from groprompt.checkpoints import CHECKPOINT_FILE, save_payload
from groprompt.errors import CheckpointError
from groprompt.files import ObjectPath, location, write_bytes_atomic, write_text_atomic
from groprompt.stages.sessions import CHECKPOINT_SNAPSHOT, RaySession


@pytest.mark.parametrize(
    ("use_gpu", "visible", "expected"),
    [(False, False, "cpu"), (False, True, "cpu"), (True, False, "cpu"), (True, True, "cuda")],
)
def test_a_trial_session_device(monkeypatch: pytest.MonkeyPatch, use_gpu: bool, visible: bool, expected: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: visible)
    assert RaySession(distributed=False, use_gpu=use_gpu).device == torch.device(expected)


OLDER, NEWER = "checkpoint_2026-12-06_01-00-00.000000", "checkpoint_2026-12-06_01-05-00.000000"  # Ray names them by time


@pytest.mark.parametrize("storage", ["local", "bucket"])
def test_a_resume_falls_back_to_the_newest_readable_registered_checkpoint(
    storage: str, tmp_path: Path, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    """The latest registered checkpoint was cut short (as an interrupted upload leaves it): the session resumes from
    the one registered before it, and says so; with no readable earlier one, the error names the unreadable file."""
    from ray.train import Checkpoint

    run = location(request.getfixturevalue("bucket") + "/runs/r") if storage == "bucket" else tmp_path / "runs" / "r"
    older = {"model": {"w": torch.arange(3.0)}, "epoch": 0}
    whole = save_payload(tmp_path / "whole", {"model": {"w": torch.ones(3)}, "epoch": 1}).read_bytes()
    for name, data in ((OLDER, save_payload(tmp_path / "older", older).read_bytes()), (NEWER, whole[: len(whole) // 2])):
        write_bytes_atomic(run / name / CHECKPOINT_FILE, data)
    entries = [{"checkpoint_dir_name": name, "metrics": {"epoch": epoch}} for epoch, name in enumerate((OLDER, NEWER))]
    write_text_atomic(run / CHECKPOINT_SNAPSHOT, json.dumps({"checkpoint_results": entries}))
    native = run.native if isinstance(run, ObjectPath) else str(run)
    filesystem = run.filesystem if isinstance(run, ObjectPath) else None
    latest = Checkpoint(f"{native}/{NEWER}", filesystem=filesystem)

    session = RaySession(distributed=False, run_folder=str(run))
    session.api = SimpleNamespace(get_checkpoint=lambda: latest)  # type: ignore[assignment]
    payload = session.latest_checkpoint()
    assert payload is not None and payload["epoch"] == 0 and torch.equal(payload["model"]["w"], older["model"]["w"])
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{run / NEWER / CHECKPOINT_FILE}: not a readable checkpoint"), line
    assert line.endswith(f"resuming from the earlier checkpoint {run / OLDER}"), line

    write_bytes_atomic(run / OLDER / CHECKPOINT_FILE, b"not a checkpoint")
    with pytest.raises(CheckpointError, match=f"{run / NEWER / CHECKPOINT_FILE}: not a readable checkpoint"):
        session.latest_checkpoint()
    with pytest.raises(CheckpointError, match="checkpoint.pt: not a readable checkpoint"):  # a trial reads a local copy
        without_folder = RaySession(distributed=False)
        without_folder.api = SimpleNamespace(get_checkpoint=lambda: latest)  # type: ignore[assignment]
        without_folder.latest_checkpoint()
