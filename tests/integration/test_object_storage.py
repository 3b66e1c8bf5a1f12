"""The shard and embed stages with their inputs and outputs in a bucket of a real S3-compatible server: the same files
as on local disk, written whole, and a re-run that rewrites only what is missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from groprompt.data.embeddings import check_embeddings, embedding_identity, read_embedding_shard
from groprompt.data.manifest import MANIFEST, read_manifest
from groprompt.data.refshapes import RefShapesSpec, write_refshapes
from groprompt.data.shards import ShardSettings, read_shard
from groprompt.data.stage_outputs import embed_here, shard_here
from groprompt.files import ObjectPath, location
from groprompt.models.sam import FrozenSam
from groprompt.stages.embed import embed_shards
from groprompt.stages.shard import shard_dataset
from tests.helpers import upload_tree


def modified(path: ObjectPath) -> object:
    """When the store last wrote the object."""
    return path.info().mtime


@pytest.mark.slow
def test_shard_and_embed_stages_write_to_a_bucket_what_they_write_on_disk_and_resume(local_ray: None, bucket: str, tmp_path: Path) -> None:
    write_refshapes(tmp_path / "refshapes", RefShapesSpec(videos=4, frames=6, size=128, seed=3), progress=False)
    settings = ShardSettings(window=4, shard_bytes=60_000, with_masks=False)
    sam = FrozenSam.from_name("tiny")
    local_frames = shard_here("refshapes", tmp_path / "refshapes", "train", tmp_path / "frames", settings)
    local_embeddings = embed_here(tmp_path / "frames", tmp_path / "embeddings", sam, batch_size=3)

    store = location(bucket)
    frames_manifest = shard_dataset("refshapes", str(tmp_path / "refshapes"), "train", f"{bucket}/frames", settings)
    assert frames_manifest == store / "frames" / MANIFEST
    embed_shards(f"{bucket}/frames", f"{bucket}/embeddings", "tiny", seed=0, batch_size=3)
    frame_rows, embedding_rows = (
        read_manifest(frames_manifest)[0],
        check_embeddings(store / "embeddings", embedding_identity(sam, "float16"))[0],
    )
    assert frame_rows == read_manifest(local_frames)[0] and embedding_rows == read_manifest(local_embeddings)[0]
    assert len(frame_rows) > 1
    for row in embedding_rows:  # the objects stream back as the files on disk read
        remote, local = store / "embeddings" / row["shard"], tmp_path / "embeddings" / row["shard"]
        assert remote.read_bytes() == local.read_bytes()
        assert [key for key, _, _ in read_embedding_shard(remote)] == row["samples"]
        assert [s.meta for s in read_shard(store / "frames" / row["shard"])] == [
            s.meta for s in read_shard(tmp_path / "frames" / row["shard"])
        ]
    names = {path.name for path in (store / "embeddings").glob("*")}
    assert names == {
        MANIFEST,
        *(r["shard"] for r in embedding_rows),
        *(f"{r['shard']}.json" for r in embedding_rows),
    }  # nothing hidden left

    # the dataset itself in the bucket (data.root): the same shards as read from disk
    upload_tree(tmp_path / "refshapes", f"{bucket}/refshapes")
    from_bucket = shard_dataset("refshapes", f"{bucket}/refshapes", "train", f"{bucket}/frames-from-bucket", settings)
    assert read_manifest(from_bucket)[0] == frame_rows

    kept = {row["shard"]: modified(store / "embeddings" / row["shard"]) for row in embedding_rows[1:]}
    (store / "embeddings" / embedding_rows[0]["shard"]).unlink()  # as if interrupted before this shard's upload
    (store / "embeddings" / MANIFEST).unlink()
    embed_shards(f"{bucket}/frames", f"{bucket}/embeddings", "tiny", seed=0, batch_size=3)
    assert check_embeddings(store / "embeddings", embedding_identity(sam, "float16"))[0] == embedding_rows
    assert {shard: modified(store / "embeddings" / shard) for shard in kept} == kept  # the others were not rewritten
