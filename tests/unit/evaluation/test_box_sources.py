"""Box sources: random model boxes against the oracle, and model weights loaded through ``groprompt.checkpoints``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from groprompt.checkpoints import TrainedWeights, load_trained
from groprompt.config import ModelConfig
from groprompt.errors import CheckpointError
from groprompt.evaluation.aggregate import merge_partials
from groprompt.evaluation.box_sources import ModelBoxes
from groprompt.evaluation.scoring import evaluate_shard
from groprompt.models.frozen import FrozenEncoders
from groprompt.models.groprompt import build_model
from groprompt.segmentors import build_segmentor

MODEL = ModelConfig(sam="tiny", d_model=32, decoder_layers=2, num_heads=2, ffn_dim=64, num_queries=6)
NO_TRACKING = ""  # file sources never reach MLflow


def test_random_model_boxes_score_below_the_oracle(
    shard_pairs: list[tuple[Path, Path]], score_shards: Callable[..., pd.DataFrame], oracle_box: pd.DataFrame, frozen: FrozenEncoders
) -> None:
    torch.manual_seed(0)
    model = build_model(MODEL, frozen)
    boxes = ModelBoxes(model, frozen)
    assert boxes.needs_embeddings
    table = score_shards(boxes, "box")
    assert set(zip(table["video"], table["exp_id"])) == set(zip(oracle_box["video"], oracle_box["exp_id"]))
    assert table["box_iou"].mean() < 0.9 < oracle_box["box_iou"].mean()
    # the frozen tiny SAM as segmentor runs on the cached embeddings (its masks are meaningless, but well-formed)
    frames, embeddings = shard_pairs[0]
    with_sam = merge_partials(evaluate_shard(frames, embeddings, boxes, build_segmentor("sam", sam=frozen.sam)))
    assert len(with_sam) > 0 and with_sam["J"].between(0, 1).all()
    with_box = merge_partials(evaluate_shard(frames, embeddings, boxes, build_segmentor("box")))
    assert np.allclose(with_sam["box_iou"], with_box["box_iou"], equal_nan=True)  # same prompts, other masks


def test_model_weights_load_from_a_checkpoint_folder_or_file(tmp_path: Path, frozen: FrozenEncoders) -> None:
    model = build_model(MODEL, frozen)
    torch.save({"model": model.state_dict(), "epoch": 1}, tmp_path / "checkpoint.pt")
    torch.save(model.state_dict(), tmp_path / "bare.pt")
    for source in (tmp_path, tmp_path / "checkpoint.pt", tmp_path / "bare.pt"):
        weights = load_trained(source, NO_TRACKING)
        assert isinstance(weights, TrainedWeights)
        loaded = ModelBoxes.load(MODEL, weights, frozen)
        assert loaded.frozen is frozen
        assert all(torch.equal(a, b) for a, b in zip(loaded.model.state_dict().values(), model.state_dict().values()))
    with pytest.raises(CheckpointError, match="not found"):
        load_trained(tmp_path / "missing", NO_TRACKING)
