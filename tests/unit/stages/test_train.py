"""Checkpoint folders of a stopped run: what Ray Train registered stays, what it never registered is removed."""

from __future__ import annotations

import json
from pathlib import Path

from groprompt.stages.sessions import CHECKPOINT_SNAPSHOT
from groprompt.stages.train import remove_unregistered_checkpoints


def checkpoint_folders(run: Path, *names: str) -> None:
    for name in names:
        (run / name).mkdir(parents=True)
        (run / name / "checkpoint.pt").write_bytes(b"payload")


def write_snapshot(run: Path, *registered: str) -> None:
    entries = [{"checkpoint_dir_name": name, "metrics": {"epoch": i}} for i, name in enumerate(registered)]
    (run / CHECKPOINT_SNAPSHOT).write_text(json.dumps({"ray_version": "2.60.0", "checkpoint_results": entries}))


def test_a_folder_the_snapshot_does_not_list_is_removed_and_the_registered_ones_stay(tmp_path: Path) -> None:
    checkpoint_folders(tmp_path, "checkpoint_a", "checkpoint_b", "checkpoint_c")
    write_snapshot(tmp_path, "checkpoint_a", "checkpoint_b")
    assert remove_unregistered_checkpoints(tmp_path) == [tmp_path / "checkpoint_c"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_a", "checkpoint_b", CHECKPOINT_SNAPSHOT]


def test_without_a_snapshot_no_folder_was_registered(tmp_path: Path) -> None:
    checkpoint_folders(tmp_path, "checkpoint_a")
    (tmp_path / "mlflow-run-id").write_text("abc")
    assert remove_unregistered_checkpoints(tmp_path) == [tmp_path / "checkpoint_a"]
    assert [p.name for p in tmp_path.iterdir()] == ["mlflow-run-id"]


def test_an_unreadable_snapshot_removes_nothing(tmp_path: Path) -> None:
    checkpoint_folders(tmp_path, "checkpoint_a")
    (tmp_path / CHECKPOINT_SNAPSHOT).write_text('{"checkpoint_results": [')
    assert remove_unregistered_checkpoints(tmp_path) == []
    assert (tmp_path / "checkpoint_a" / "checkpoint.pt").is_file()


def test_a_run_never_started_has_nothing_to_remove(tmp_path: Path) -> None:
    assert remove_unregistered_checkpoints(tmp_path / "new-run") == []
