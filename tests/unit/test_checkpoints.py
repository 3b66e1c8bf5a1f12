"""groprompt.checkpoints: reading trained weights from a checkpoint folder, a payload file or a bare state dict."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from groprompt.checkpoints import load_trained, random_weights, save_payload
from groprompt.errors import CheckpointError


def small_state() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {"proposal.weight": torch.randn(3, 2, generator=generator), "proposal.bias": torch.randn(3, generator=generator)}


def assert_same_state(loaded: dict[str, torch.Tensor] | None, expected: dict[str, torch.Tensor]) -> None:
    assert loaded is not None and loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)


def test_load_trained_from_folder_payload_file_and_bare_state(tmp_path: Path) -> None:
    state = small_state()
    save_payload(tmp_path / "ckpt", {"model": state, "epoch": 3})
    from_folder = load_trained(tmp_path / "ckpt", tracking_uri="unused")
    assert_same_state(from_folder.state, state)
    assert from_folder.model_config is None and len(from_folder.model_id) == 64

    torch.save({"model": state, "epoch": 3}, tmp_path / "payload.pt")
    assert_same_state(load_trained(tmp_path / "payload.pt", tracking_uri="unused").state, state)

    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "bare.pt")  # saved from a DDP-wrapped model
    bare = load_trained(tmp_path / "bare.pt", tracking_uri="unused")
    assert_same_state(bare.state, state)
    assert bare.model_id != from_folder.model_id  # the sha256 of each file


def test_load_trained_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="nothing"):
        load_trained(tmp_path / "nothing", tracking_uri="unused")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not found"):
        load_trained(tmp_path / "empty", tracking_uri="unused")
    torch.save({"model": {"weight": [1, 2, 3]}}, tmp_path / "lists.pt")
    with pytest.raises(CheckpointError, match="lists.pt"):
        load_trained(tmp_path / "lists.pt", tracking_uri="unused")


def test_load_trained_from_object_storage(tmp_path: Path, bucket: str) -> None:
    """A checkpoint folder or file in a bucket loads as it does from disk; its id is the sha256 of its bytes; a missing
    key is refused naming its URI."""
    import boto3

    state = small_state()
    local = save_payload(tmp_path / "ckpt", {"model": state, "epoch": 3})
    name = bucket.removeprefix("s3://")
    boto3.client("s3").upload_file(str(local), name, "run/ckpt/checkpoint.pt")
    for source in (f"{bucket}/run/ckpt", f"{bucket}/run/ckpt/checkpoint.pt"):
        loaded = load_trained(source, tracking_uri="unused")
        assert_same_state(loaded.state, state)
        assert loaded.model_id == hashlib.sha256(local.read_bytes()).hexdigest()
    with pytest.raises(CheckpointError, match=f"{bucket}/run/other: checkpoint not found"):
        load_trained(f"{bucket}/run/other", tracking_uri="unused")


def test_random_weights_have_no_state() -> None:
    weights = random_weights(7)
    assert (weights.state, weights.model_config, weights.model_id) == (None, None, "random:7")
