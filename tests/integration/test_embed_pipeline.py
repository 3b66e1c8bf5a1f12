"""pipelines/embed.py: pool sizing, and the stage through a real local Ray (manifest, resume equals a clean run)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from groprompt.data.embeddings import check_embeddings, embedding_identity, read_embedding_shard
from groprompt.data.manifest import read_manifest, sha256_file
from groprompt.data.refshapes import RefShapesSpec, write_refshapes
from groprompt.data.shards import ShardSettings
from groprompt.models.sam import SAM_CONFIGS, FrozenSam
from pipelines.embed import embed_shards, encoder_bytes, plan_pool
from pipelines.shard import shard_dataset

GIB = 2**30


def test_cpu_pool_has_an_actor_per_cpu_within_memory_and_shards() -> None:
    tiny = encoder_bytes(SAM_CONFIGS["tiny"], 16)
    assert plan_pool(n_shards=10, cpus=2, gpus=0, memory=16 * GIB, actor_bytes=tiny).actors == 2
    assert plan_pool(n_shards=10, cpus=2, gpus=0, memory=16 * GIB, actor_bytes=tiny).threads == 1
    single = plan_pool(n_shards=1, cpus=8, gpus=0, memory=16 * GIB, actor_bytes=tiny)
    assert (single.actors, single.threads, single.num_gpus) == (1, 8, 0)
    vit_b = plan_pool(n_shards=10, cpus=2, gpus=0, memory=15 * GIB, actor_bytes=encoder_bytes(SAM_CONFIGS["vit_b"], 4))
    assert (vit_b.actors, vit_b.threads) == (1, 2)  # two ViT-B actors at batch 4 would not fit
    huge = plan_pool(n_shards=10, cpus=2, gpus=0, memory=4 * GIB, actor_bytes=encoder_bytes(SAM_CONFIGS["vit_h"], 8))
    assert huge.actors == 1 and huge.memory == 4 * GIB  # still schedulable


def test_gpu_pool_has_an_actor_per_gpu() -> None:
    plan = plan_pool(n_shards=10, cpus=16, gpus=2, memory=64 * GIB, actor_bytes=GIB)
    assert (plan.actors, plan.num_gpus, plan.num_cpus, plan.threads, plan.memory) == (2, 1, 1, 8, 0)


def test_vit_b_memory_estimate_is_near_the_measured_peak() -> None:
    assert 2.8 * GIB < encoder_bytes(SAM_CONFIGS["vit_b"], 1) < 3.6 * GIB  # measured: 3.2 GiB at batch 1


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
