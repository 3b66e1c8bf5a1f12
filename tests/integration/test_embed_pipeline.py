"""The embed stage through a real local Ray: manifest, and resume equals a clean run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from groprompt.data.embeddings import check_embeddings, embedding_identity, read_embedding_shard
from groprompt.data.manifest import read_manifest
from groprompt.data.refshapes import RefShapesSpec, write_refshapes
from groprompt.data.shards import ShardSettings
from groprompt.files import sha256_file
from groprompt.models.sam import FrozenSam
from groprompt.stages.embed import embed_shards
from groprompt.stages.shard import shard_dataset


@pytest.mark.slow
def test_embed_stage_and_resume(local_ray: None, tmp_path: Path) -> None:
    write_refshapes(tmp_path / "refshapes", RefShapesSpec(videos=4, frames=6, size=128, seed=3), progress=False)
    settings = ShardSettings(window=4, shard_bytes=60_000, with_masks=False)
    frames_manifest = shard_dataset("refshapes", str(tmp_path / "refshapes"), "train", tmp_path / "frames", settings)
    frame_rows, _ = read_manifest(frames_manifest)
    assert len(frame_rows) > 1

    embed_shards(tmp_path / "frames", tmp_path / "clean", "tiny", seed=0, batch_size=3)
    identity = embedding_identity(FrozenSam.from_name("tiny"), "float16")
    rows, metadata = check_embeddings(tmp_path / "clean", identity)
    assert metadata["identity"] == identity
    assert metadata["frames_manifest"] == {"path": str(frames_manifest), "sha256": sha256_file(frames_manifest)}
    assert [(r["shard"], r["samples"], r["n_frames"]) for r in rows] == [(r["shard"], r["samples"], r["n_frames"]) for r in frame_rows]
    for row in rows:
        assert sha256_file(tmp_path / "clean" / row["shard"]) == row["sha256"]
        assert [key for key, _, _ in read_embedding_shard(tmp_path / "clean" / row["shard"])] == row["samples"]

    resumed_dir = tmp_path / "resumed"
    shutil.copytree(tmp_path / "clean", resumed_dir)
    kept = {row["shard"]: (resumed_dir / row["shard"]).stat().st_mtime_ns for row in rows[1:]}
    (resumed_dir / rows[0]["shard"]).unlink()  # as if interrupted
    (resumed_dir / "manifest.parquet").unlink()
    resumed = embed_shards(tmp_path / "frames", resumed_dir, "tiny", batch_size=3)
    assert read_manifest(resumed) == (rows, metadata)
    assert {shard: (resumed_dir / shard).stat().st_mtime_ns for shard in kept} == kept
