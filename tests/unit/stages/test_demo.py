"""The demo's stage records: a stage runs once and its recorded outcome is returned on later runs, in a folder or in
a bucket."""

from __future__ import annotations

from pathlib import Path

import pytest

from groprompt.files import location
from groprompt.stages.demo import stage


@pytest.mark.parametrize("store", ["local", "bucket"])
def test_a_stage_runs_once_and_its_outcome_is_reused(tmp_path: Path, store: str, request: pytest.FixtureRequest) -> None:
    folder = location(tmp_path / "demo" if store == "local" else f"{request.getfixturevalue('bucket')}/work/demo")
    folder.mkdir(parents=True, exist_ok=True)
    calls = []

    def work() -> dict[str, object]:
        calls.append(len(calls))
        return {"rows": 3, "manifest": "shards/manifest.parquet"}

    assert stage(folder, "shard-valid", work) == {"rows": 3, "manifest": "shards/manifest.parquet"}
    assert stage(folder, "shard-valid", work) == {"rows": 3, "manifest": "shards/manifest.parquet"}
    assert calls == [0]  # the second call read the record instead of running the stage
    assert (folder / "shard-valid.json").is_file()
