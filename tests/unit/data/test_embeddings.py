"""Embedding shards: equal to FrozenSam.encode, keyed like the frame shards, resumable, checked, safe to read."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from groprompt.data.embeddings import (
    check_embeddings,
    embed_shard,
    embedding_identity,
    from_storage,
    read_embedding_shard,
    to_storage,
)
from groprompt.data.manifest import write_manifest
from groprompt.data.shards import add_member, read_shard
from groprompt.errors import DataError
from groprompt.models.sam import FrozenSam
from tests.helpers import make_frame_shards

TOLERANCE = {"float16": 1e-3, "bfloat16": 8e-3, "float32": 1e-5}  # relative to the largest magnitude


@pytest.fixture(scope="module")
def frame_shards(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    root = tmp_path_factory.mktemp("embeddings")
    return root / "frames", make_frame_shards(root)


@pytest.fixture(scope="module")
def sam() -> FrozenSam:
    return FrozenSam.from_name("tiny")


def embed_all(
    sam: FrozenSam, frame_shards: tuple[Path, list[dict]], out: Path, batch_size: int = 3, dtype: str = "float16"
) -> list[tuple[dict, bool]]:
    """``embed_shard`` over every frame shard, in order."""
    frames_dir, records = frame_shards
    out.mkdir(exist_ok=True)
    return [embed_shard(sam, frames_dir / r["shard"], r["sha256"], out, batch_size, dtype) for r in records]


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_stored_embeddings_equal_frozen_sam_encode(sam: FrozenSam, frame_shards, tmp_path: Path, dtype: str) -> None:
    frames_dir, records = frame_shards
    results = embed_all(sam, frame_shards, tmp_path, batch_size=3, dtype=dtype)  # batches span samples
    assert all(computed for _, computed in results)
    checked = 0
    for record in records:
        embedded = read_embedding_shard(tmp_path / record["shard"])
        for sample, (key, meta, array) in zip(read_shard(frames_dir / record["shard"]), embedded, strict=True):
            assert key == sample.key and meta["frame_names"] == sample.meta["frame_names"]
            stored = (sample.meta["stored_height"], sample.meta["stored_width"])
            assert meta["stored_size"] == list(stored) and meta["input_size"] == list(sam.input_size(stored))
            assert array.dtype == (np.float16 if dtype == "float16" else np.float32)
            assert array.shape == (len(sample.frames), sam.embed_dim, sam.embed_grid, sam.embed_grid)
            reference = sam.encode([sample.frame(i) for i in range(len(sample.frames))]).numpy()
            scale = np.abs(reference).max()
            assert np.abs(array.astype(np.float32) - reference).max() <= TOLERANCE[dtype] * scale
            checked += len(sample.frames)
    assert checked == sum(record["n_frames"] for record in records) > 0


def test_embedding_shards_are_keyed_one_to_one_with_frame_shards(sam: FrozenSam, frame_shards, tmp_path: Path) -> None:
    _, records = frame_shards
    assert len(records) > 1 and any(len(r["samples"]) > 1 for r in records)
    for (record, _), frame_record in zip(embed_all(sam, frame_shards, tmp_path), records, strict=True):
        assert record["shard"] == frame_record["shard"]
        assert record["samples"] == frame_record["samples"] and record["n_frames"] == frame_record["n_frames"]
        assert record["frame_shard_sha256"] == frame_record["sha256"]
        assert record["identity"] == embedding_identity(sam, "float16")
        assert [key for key, _, _ in read_embedding_shard(tmp_path / record["shard"])] == frame_record["samples"]
        with tarfile.open(tmp_path / record["shard"]) as tar:
            names = tar.getnames()
        assert all(n.endswith(".json") or n.endswith(".npy") for n in names)
        assert len(names) == frame_record["n_samples"] + frame_record["n_frames"]


def test_batch_size_does_not_change_the_embeddings(sam: FrozenSam, frame_shards, tmp_path: Path) -> None:
    one, many = tmp_path / "one", tmp_path / "many"
    records = embed_all(sam, frame_shards, one, batch_size=1, dtype="float32")
    embed_all(sam, frame_shards, many, batch_size=16, dtype="float32")
    for record, _ in records:
        pairs = zip(read_embedding_shard(one / record["shard"]), read_embedding_shard(many / record["shard"]), strict=True)
        for (_, _, x), (_, _, y) in pairs:
            np.testing.assert_allclose(x, y, atol=1e-5 * np.abs(x).max())


def test_resume_recomputes_only_missing_or_damaged_shards(sam: FrozenSam, frame_shards, tmp_path: Path, monkeypatch) -> None:
    clean = [record for record, _ in embed_all(sam, frame_shards, tmp_path)]
    mtimes = {r["shard"]: (tmp_path / r["shard"]).stat().st_mtime_ns for r in clean}
    deleted, damaged = clean[0]["shard"], clean[1]["shard"]
    (tmp_path / deleted).unlink()  # as if interrupted before the rename
    (tmp_path / f".{deleted}.12345.tmp").write_bytes(b"truncated")  # an interrupted write's leftover
    with (tmp_path / damaged).open("r+b") as handle:
        handle.seek(600)
        handle.write(b"\x00" * 8)
    encoded: list[int] = []
    original = FrozenSam.encode_prepared
    monkeypatch.setattr(FrozenSam, "encode_prepared", lambda self, images: encoded.append(len(images)) or original(self, images))
    resumed = embed_all(sam, frame_shards, tmp_path)
    assert [computed for _, computed in resumed] == [r["shard"] in (deleted, damaged) for r in clean]
    assert sum(encoded) == clean[0]["n_frames"] + clean[1]["n_frames"]
    assert [record for record, _ in resumed] == clean
    for record in clean[2:]:
        assert (tmp_path / record["shard"]).stat().st_mtime_ns == mtimes[record["shard"]]


def test_other_model_or_dtype_recomputes(sam: FrozenSam, frame_shards, tmp_path: Path) -> None:
    embed_all(sam, frame_shards, tmp_path)
    other_seed = embed_all(FrozenSam.from_name("tiny", seed=1), frame_shards, tmp_path)
    assert all(computed for _, computed in other_seed)
    as_float32 = embed_all(FrozenSam.from_name("tiny", seed=1), frame_shards, tmp_path, dtype="float32")
    assert all(computed for _, computed in as_float32)


def test_a_changed_frame_shard_is_an_error(sam: FrozenSam, frame_shards, tmp_path: Path) -> None:
    frames_dir, records = frame_shards
    with pytest.raises(DataError, match=r"shard-000000\.tar: content differs from the sha256"):
        embed_shard(sam, frames_dir / records[0]["shard"], "0" * 64, tmp_path, 4)


def write_embedding_manifest(out: Path, identity: dict) -> None:
    write_manifest(out / "manifest.parquet", [{"shard": "shard-000000.tar"}], {"stage": "embed", "identity": identity})


def test_check_embeddings_accepts_the_same_model(sam: FrozenSam, tmp_path: Path) -> None:
    write_embedding_manifest(tmp_path, embedding_identity(sam, "float16"))
    rows, metadata = check_embeddings(tmp_path, embedding_identity(FrozenSam.from_name("tiny"), "float16"))
    assert rows == [{"shard": "shard-000000.tar"}] and metadata["identity"]["weights_id"] == "random-init:0"


@pytest.mark.parametrize(
    ("name", "seed", "dtype", "field"),
    [("tiny-d0", 0, "float16", "sam"), ("tiny", 1, "float16", "weights_id"), ("tiny", 0, "float32", "dtype")],
)
def test_check_embeddings_refuses_another_model(sam: FrozenSam, tmp_path: Path, name: str, seed: int, dtype: str, field: str) -> None:
    write_embedding_manifest(tmp_path, embedding_identity(sam, "float16"))
    expected = embedding_identity(FrozenSam.from_name(name, seed=seed), dtype)
    with pytest.raises(DataError, match=rf"{tmp_path}/manifest\.parquet: .*{field} is .*expected .*pipelines/embed\.py"):
        check_embeddings(tmp_path, expected)


def test_check_embeddings_refuses_another_stage_and_a_missing_manifest(sam: FrozenSam, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="manifest not found"):
        check_embeddings(tmp_path, embedding_identity(sam, "float16"))
    write_manifest(tmp_path / "manifest.parquet", [{"shard": "x"}], {"stage": "shard"})
    with pytest.raises(DataError, match="not an embedding manifest"):
        check_embeddings(tmp_path, embedding_identity(sam, "float16"))


def test_unknown_dtype_is_refused(sam: FrozenSam) -> None:
    with pytest.raises(ValueError, match="unsupported embedding dtype 'int8'"):
        embedding_identity(sam, "int8")


def test_bfloat16_storage_round_trips_bit_patterns() -> None:
    import torch

    values = torch.tensor([1.0, -2.5, 3.140625, 65504.0, 1e-3])
    stored = to_storage(values, "bfloat16")
    assert stored.dtype == np.uint16
    np.testing.assert_array_equal(from_storage(stored, "bfloat16"), values.to(torch.bfloat16).float().numpy())


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def write_tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, payload in members:
            add_member(tar, name, payload)
    return path


META = json.dumps({"key": "v__00000", "n_frames": 1, "shape": [2, 2, 2], "dtype": "float16"}).encode()
FRAME = npy(np.zeros((2, 2, 2), np.float16))


@pytest.mark.parametrize("name", ["../v__00000.0000.npy", "/tmp/v__00000.0000.npy", "sub/v__00000.0000.npy", "v__00000"])
def test_unsafe_member_names_are_refused(tmp_path: Path, name: str) -> None:
    shard = write_tar(tmp_path / "shard-000000.tar", [("v__00000.json", META), (name, FRAME)])
    with pytest.raises(DataError, match=rf"{shard}: refusing member"):
        list(read_embedding_shard(shard))


def test_a_link_member_is_refused(tmp_path: Path) -> None:
    shard = tmp_path / "shard-000000.tar"
    with tarfile.open(shard, "w") as tar:
        info = tarfile.TarInfo("v__00000.json")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(DataError, match="refusing member"):
        list(read_embedding_shard(shard))


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([("v__00000.0000.npy", FRAME)], "unexpected member v__00000.0000.npy"),
        ([("v__00000.json", META), ("v__00000.0001.npy", FRAME)], "out of order"),
        ([("v__00000.json", META)], "has 0 of 1 embeddings"),
        ([("v__00000.json", META), ("v__00000.0000.npy", npy(np.zeros((2, 2, 2), np.float32)))], "expected float16"),
        ([("v__00000.json", b"{not json")], "not a readable embedding shard"),
    ],
)
def test_malformed_shards_are_errors_naming_the_file(tmp_path: Path, members: list[tuple[str, bytes]], message: str) -> None:
    shard = write_tar(tmp_path / "shard-000000.tar", members)
    with pytest.raises(DataError, match=rf"{shard}: .*{message}"):
        list(read_embedding_shard(shard))


def test_a_truncated_shard_is_an_error(sam: FrozenSam, frame_shards, tmp_path: Path) -> None:
    record, _ = embed_all(sam, frame_shards, tmp_path)[0]
    shard = tmp_path / record["shard"]
    truncated = tmp_path / "truncated.tar"
    shutil.copyfile(shard, truncated)
    with truncated.open("r+b") as handle:
        handle.truncate(shard.stat().st_size // 2)
    with pytest.raises(DataError, match=rf"{truncated}: "):
        list(read_embedding_shard(truncated))
