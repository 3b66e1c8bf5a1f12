"""groprompt.inference.predictor: the worker's models, untrained or with trained weights, and each segmentor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from groprompt.checkpoints import load_trained, random_weights
from groprompt.inference.predictor import Predictor, build_predictor
from groprompt.inference.queries import Query
from groprompt.inference.sources import video_source
from groprompt.inference.video import infer_video
from groprompt.mask_io import rle_to_mask


def test_random_predictor_is_named_by_its_seed(predictor: Predictor) -> None:
    assert (predictor.model_id, predictor.segmentor_name) == ("random:0", "sam")
    assert not predictor.model.training and not any(p.requires_grad for p in predictor.model.parameters())


def test_trained_weights_are_loaded_and_name_the_predictor(tmp_path: Path, predictor: Predictor, model_config) -> None:
    state = predictor.model.state_dict()
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "bare.pt")
    weights = load_trained(tmp_path / "bare.pt", tracking_uri="unused")
    rebuilt = build_predictor(model_config, weights, "box", seed=5)
    assert all(torch.equal(a, b) for a, b in zip(rebuilt.model.state_dict().values(), state.values()))
    assert rebuilt.model_id == weights.model_id and len(rebuilt.model_id) == 64


def test_box_segmentor_fills_the_box(tmp_path: Path, model_config, synthetic) -> None:
    boxer = build_predictor(model_config, random_weights(1), segmentor="box", seed=1)
    source = video_source(synthetic.folder(tmp_path / "v", frames=2))
    result = infer_video(boxer, source, [Query("v", "the red square", "0")], tmp_path / "out", model_config)
    for row in pq.read_table(result.parquet).to_pylist():
        mask = rle_to_mask(row["rle"])
        x0, y0, x1, y1 = row["box"]
        ys, xs = np.nonzero(mask)
        if len(xs):
            assert xs.min() >= np.floor(x0) and xs.max() < np.ceil(x1) and ys.min() >= np.floor(y0) and ys.max() < np.ceil(y1)
