"""The shard stage through a real local Ray: manifest, and resume equals a clean run."""

from __future__ import annotations

from pathlib import Path

import pytest

from groprompt.data.manifest import read_manifest
from groprompt.data.shards import ShardSettings
from groprompt.stages.shard import shard_dataset
from tests.helpers import mini_davis

pytestmark = pytest.mark.slow


def test_shard_stage_and_resume(local_ray: None, shared_data: Path, tmp_path: Path) -> None:
    root = mini_davis(shared_data, tmp_path, ("blackswan", "cows", "dog"))
    settings = ShardSettings(window=30, shard_bytes=3 * 2**20, with_masks=True)
    clean = shard_dataset("ref-davis17", str(root), "valid", tmp_path / "clean", settings)
    rows, metadata = read_manifest(clean)
    assert metadata["dataset"] == "ref-davis17" and metadata["split"] == "valid"
    assert metadata["settings"]["with_masks"] is True and metadata["rejected"] == []
    assert sum(row["n_frames"] for row in rows) == 50 + 104 + 60
    assert len(rows) > 1 and all(len(row["sha256"]) == 64 for row in rows)

    resumed_dir = tmp_path / "resumed"
    shard_dataset("ref-davis17", str(root), "valid", resumed_dir, settings)
    (resumed_dir / rows[1]["shard"]).unlink()  # as if interrupted
    (resumed_dir / "manifest.parquet").unlink()
    resumed = shard_dataset("ref-davis17", str(root), "valid", resumed_dir, settings)
    resumed_rows, resumed_metadata = read_manifest(resumed)
    assert resumed_rows == rows
    assert {**resumed_metadata, "root": None} == {**metadata, "root": None}
