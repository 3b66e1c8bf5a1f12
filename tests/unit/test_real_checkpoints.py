"""Stages take ``model.sam`` + ``model.sam_checkpoint`` + ``model.text_encoder`` from configuration: a checkpoint
file in the official state-dict format (as ``segment_anything`` builds it) flows through embedding and training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from groprompt.config import load_config
from groprompt.data.embeddings import check_embeddings, embed_shard, embedding_identity
from groprompt.data.formats import read_videos
from groprompt.data.manifest import write_manifest
from groprompt.data.refshapes import RefShapesSpec, write_refshapes
from groprompt.data.shards import ShardSettings, plan_shards, write_shard
from groprompt.errors import DataError
from groprompt.files import sha256_file
from groprompt.models.frozen import build_frozen
from groprompt.models.groprompt import build_model
from groprompt.models.sam import SAM_CONFIGS, FrozenSam, build_sam
from groprompt.models.text import default_text_encoder_path
from tests.helpers import REPO_ROOT


def test_a_checkpoint_file_flows_from_configuration_through_the_stages(tmp_path: Path) -> None:
    torch.manual_seed(7)
    checkpoint = tmp_path / "sam_tiny.pth"
    torch.save(build_sam(SAM_CONFIGS["tiny"]).state_dict(), checkpoint)  # the official format: a bare state dict
    config = load_config(
        [REPO_ROOT / "conf" / "tiny.yaml"], [f"model.sam_checkpoint={checkpoint}", f"model.text_encoder={default_text_encoder_path()}"]
    )
    frozen = build_frozen(config.model)
    assert frozen.sam.weights_id == sha256_file(checkpoint)
    assert torch.equal(
        frozen.sam.sam.mask_decoder.iou_token.weight, torch.load(checkpoint, weights_only=True)["mask_decoder.iou_token.weight"]
    )
    assert build_model(config.model, frozen) is not None

    write_refshapes(tmp_path / "data", RefShapesSpec(videos=2, frames=2, size=128, seed=0), valid_fraction=0.0, progress=False)
    plan = plan_shards(list(read_videos("refshapes", tmp_path / "data", "train", with_boxes=False)), ShardSettings(window=2))[0]
    (tmp_path / "shards").mkdir()
    record = write_shard(plan, tmp_path / "shards", ShardSettings(window=2))
    (tmp_path / "embeddings").mkdir()
    embedded, _ = embed_shard(frozen.sam, tmp_path / "shards" / plan.name, record["sha256"], tmp_path / "embeddings", batch_size=2)
    identity = embedding_identity(frozen.sam, "float16")
    metadata = {"stage": "embed", "identity": embedded["identity"], "frames_manifest": {"path": "", "sha256": ""}}
    write_manifest(tmp_path / "embeddings" / "manifest.parquet", [{"shard": embedded["shard"]}], metadata)
    assert check_embeddings(tmp_path / "embeddings", identity)[1]["identity"]["weights_id"] == sha256_file(checkpoint)
    with pytest.raises(DataError, match="weights_id"):  # random weights must not train on these embeddings
        check_embeddings(tmp_path / "embeddings", embedding_identity(FrozenSam.from_name("tiny", seed=0), "float16"))
