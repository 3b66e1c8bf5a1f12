"""Box sources: random model boxes against the oracle, model weights loaded through ``groprompt.checkpoints``, model
boxes equal to inference's over a video cut into windows and shards, and the sentence-blind reference."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from groprompt.checkpoints import TrainedWeights, load_trained
from groprompt.config import ModelConfig
from groprompt.data.embeddings import embed_shard, read_embedding_shard
from groprompt.data.formats import read_videos
from groprompt.data.refshapes import RefShapesSpec, write_refshapes
from groprompt.data.shards import ShardSettings, plan_shards, read_shard, write_shard
from groprompt.data.targets import referring_expressions
from groprompt.errors import CheckpointError
from groprompt.evaluation.aggregate import merge_partials
from groprompt.evaluation.box_sources import BOX_SOURCES, ModelBoxes, Prompts, SentenceBlindBoxes
from groprompt.evaluation.scoring import evaluate_shard, evaluate_shards, whole_video_groups
from groprompt.inference.predictor import Predictor
from groprompt.inference.sources import iter_frames
from groprompt.inference.video import predict_video
from groprompt.mask_io import read_index_png
from groprompt.models.frozen import FrozenEncoders
from groprompt.models.groprompt import GroPrompt, build_model
from groprompt.models.segmentors import build_segmentor

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


class RecordingBoxes(ModelBoxes):
    """Model boxes that keep what they returned: (video, frame) -> ((E, 4) boxes, (E,) scores), and each video's sentences."""

    def __init__(self, model: GroPrompt, frozen: FrozenEncoders) -> None:
        super().__init__(model, frozen)
        self.returned: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
        self.sentences: dict[str, list[str]] = {}

    def prompts(
        self, meta: dict[str, Any], expressions: list[dict[str, Any]], embeddings: np.ndarray | None, frames: list[np.ndarray] | None = None
    ) -> Prompts:
        prompts = super().prompts(meta, expressions, embeddings, frames)
        self.sentences[meta["video_id"]] = [e["text"] for e in expressions]
        self.returned.update(
            {(meta["video_id"], frame): (prompts.boxes[:, t], prompts.scores[:, t]) for t, frame in enumerate(meta["frame_names"])}
        )
        return prompts


@pytest.mark.usefixtures("one_torch_thread")
def test_model_boxes_and_sam2_masks_of_evaluation_equal_inference_over_windows_and_shards(
    tmp_path: Path, frozen: FrozenEncoders, sam2_folder: Path
) -> None:
    # Two 5-frame videos in windows of 2 (3 samples each), packed two windows a shard: the first video is cut
    # between two shards. Embeddings stored as float32, so that evaluation sees what inference computes. SAM 2's
    # memory, like the generator's state, runs on through a video's samples and shards.
    write_refshapes(tmp_path / "shapes", RefShapesSpec(videos=2, frames=5, size=128, seed=1), valid_fraction=0.5, progress=False)
    videos = {split: list(read_videos("refshapes", tmp_path / "shapes", split, with_boxes=False)) for split in ("train", "valid")}
    settings = ShardSettings(window=2, shard_bytes=40_000, with_masks=True)
    plans = plan_shards([v for split in videos.values() for v in split], settings)
    (tmp_path / "frames").mkdir()
    (tmp_path / "embeddings").mkdir()
    records = [write_shard(plan, tmp_path / "frames", settings) for plan in plans]
    for record in records:
        embed_shard(frozen.sam, tmp_path / "frames" / record["shard"], record["sha256"], tmp_path / "embeddings", 4, dtype="float32")
    torch.manual_seed(0)
    model = build_model(MODEL, frozen)

    evaluated = RecordingBoxes(model, frozen)
    sam2 = build_segmentor("sam2", config=ModelConfig(segmentor_weights=str(sam2_folder)))
    groups = whole_video_groups(records)
    assert len(groups) < len(records)  # a video spans two shards
    for group in groups:
        shards = [(tmp_path / "frames" / r["shard"], tmp_path / "embeddings" / r["shard"]) for r in group]
        evaluate_shards(shards, evaluated, sam2, png_dir=tmp_path / "png")

    predictor = Predictor(frozen, model, sam2, "sam2", "random:0")
    for split, split_videos in videos.items():
        for video in split_videos:
            frames = iter_frames(tmp_path / "shapes" / split / "JPEGImages" / video.video_id)
            exp_ids = [str(e.exp_id) for e in video.expressions]
            for prediction in predict_video(predictor, frames, evaluated.sentences[video.video_id]):
                pngs = [read_index_png(tmp_path / "png" / video.video_id / exp_id / f"{prediction.name}.png") == 1 for exp_id in exp_ids]
                np.testing.assert_array_equal(np.stack(pngs), prediction.masks, err_msg=f"{video.video_id} {prediction.name}")
                boxes, scores = evaluated.returned[video.video_id, prediction.name]
                np.testing.assert_allclose(boxes, prediction.boxes, atol=1e-4, rtol=0)
                np.testing.assert_allclose(scores, prediction.scores, atol=1e-5, rtol=0)

    # what a fresh state at each sample (the old behaviour) gives on the second window differs
    first = sorted(evaluated.sentences)[0]
    second_window = next(s for r in records for s in read_shard(tmp_path / "frames" / r["shard"]) if s.key == f"{first}__00002")
    _, _, embedding = next(
        e for r in records for e in read_embedding_shard(tmp_path / "embeddings" / r["shard"]) if e[0] == second_window.key
    )
    expressions = referring_expressions(second_window.meta)
    restarted = ModelBoxes(model, frozen).prompts(second_window.meta, expressions, embedding).boxes
    assert np.abs(restarted[:, 0] - evaluated.returned[first, second_window.meta["frame_names"][0]][0]).max() > 1e-2


def two_objects_meta(frames: int) -> dict[str, Any]:
    """A hand-made sample of two objects, both present in every frame but the last two: there object 2 alone, then none."""
    first = [[float(t), 0.0, t + 10.0, 10.0] for t in range(frames - 2)] + [None, None]
    second = [[50.0, float(t), 70.0, t + 20.0] for t in range(frames - 1)] + [None]
    return {
        "video_id": "v",
        "frame_names": [f"{t:05d}" for t in range(frames)],
        "height": 100,
        "width": 100,
        "boxes": {"1": first, "2": second},
    }


def test_sentence_blind_boxes_are_a_random_objects_ground_truth_whatever_the_sentence() -> None:
    meta = two_objects_meta(402)
    expressions = [
        {"exp_id": "0", "text": "the red square", "obj_id": 1},
        {"exp_id": "1", "text": "the blue circle moving down", "obj_id": 2},
    ]
    source = SentenceBlindBoxes(seed=3)
    assert not source.needs_embeddings and "sentence-blind" in BOX_SOURCES
    prompts = source.prompts(meta, expressions, None)
    assert prompts.boxes.shape == (2, 402, 1, 4)  # one box per expression and frame
    boxes = prompts.boxes[:, :, 0]
    np.testing.assert_array_equal(prompts.scores[:, :, 0], np.isfinite(boxes[..., 0]).astype(float))  # a ground-truth box is certain
    np.testing.assert_array_equal(boxes[0], boxes[1])  # the sentence plays no part
    first, second = np.array(meta["boxes"]["1"][:400]), np.array(meta["boxes"]["2"][:400])
    picked_first = (boxes[0, :400] == first).all(axis=1)
    assert (picked_first | (boxes[0, :400] == second).all(axis=1)).all()  # always one of the objects' boxes
    assert 0.4 < picked_first.mean() < 0.6  # each object about half the time
    np.testing.assert_array_equal(boxes[0, 400], meta["boxes"]["2"][400])  # the one object present
    assert np.isnan(boxes[:, 401]).all()  # no object present: no box
    np.testing.assert_array_equal(SentenceBlindBoxes(seed=3).prompts(meta, expressions[::-1], None).union_boxes(), boxes)  # deterministic
    assert not np.array_equal(SentenceBlindBoxes(seed=4).prompts(meta, expressions, None).union_boxes()[0], boxes[0])  # the seed draws


def test_sentence_blind_boxes_do_not_depend_on_the_window() -> None:
    meta = two_objects_meta(40)
    whole = SentenceBlindBoxes().prompts(meta, [{"exp_id": "0", "text": "x", "obj_id": 1}], None).boxes[0]
    window = {**meta, "frame_names": meta["frame_names"][10:20], "boxes": {k: v[10:20] for k, v in meta["boxes"].items()}}
    windowed = SentenceBlindBoxes().prompts(window, [{"exp_id": "0", "text": "x", "obj_id": 1}], None).boxes[0]
    np.testing.assert_array_equal(windowed, whole[10:20])


def test_sentence_blind_boxes_draw_among_objects_never_a_group() -> None:
    meta = two_objects_meta(60)
    meta["boxes"]["3"] = [[0.0, 0.0, 100.0, 100.0]] * 60  # a group of objects 1 and 2 (a box no single object has)
    meta["groups"] = {"3": [1, 2]}
    drawn = SentenceBlindBoxes().prompts(meta, [{"exp_id": "0", "text": "both", "obj_id": 3}], None).union_boxes()[0]
    assert not (drawn == [0.0, 0.0, 100.0, 100.0]).all(axis=1).any()
    singles = {tuple(box) for obj in ("1", "2") for box in meta["boxes"][obj] if box is not None}
    assert all(tuple(box) in singles for box in drawn[:58])


def test_prompts_score_the_box_around_each_expressions_boxes() -> None:
    nan = [np.nan] * 4
    boxes = np.array([[[[0, 0, 10, 10], [20, 5, 30, 40]], [nan, nan]]], dtype=np.float64)  # 1 expression, 2 frames, K = 2
    around = Prompts(boxes, np.array([[[0.9, 0.6], [0.1, 0.2]]])).union_boxes()
    np.testing.assert_array_equal(around[0, 0], [0, 0, 30, 40])
    assert np.isnan(around[0, 1]).all()  # no box kept: none to score


def test_set_mode_model_boxes_give_every_frame_all_query_slots(
    shard_pairs: list[tuple[Path, Path]], score_shards: Callable[..., pd.DataFrame], oracle_box: pd.DataFrame, frozen: FrozenEncoders
) -> None:
    """Frame 0 has no propagated query, later frames one more: frame 0's extra slot is empty (NaN, confidence 0)."""
    torch.manual_seed(0)
    config = replace(MODEL, multi_object=True, set_score_threshold=0.0)  # every box kept
    boxes = ModelBoxes(build_model(config, frozen), frozen)
    frames, embeddings = shard_pairs[0]
    sample, embedding = next(
        (s, e) for s, e in zip(read_shard(frames, with_images=False), (a for _, _, a in read_embedding_shard(embeddings)))
    )
    prompts = boxes.prompts(sample.meta, referring_expressions(sample.meta), embedding)
    assert prompts.boxes.shape[2] == config.num_queries + 1
    assert np.isnan(prompts.boxes[:, 0, -1]).all() and (prompts.scores[:, 0, -1] == 0).all()
    assert np.isfinite(prompts.boxes[:, 1:]).all()  # threshold 0: every later slot kept
    table = score_shards(ModelBoxes(build_model(config, frozen), frozen), "box")
    assert set(zip(table["video"], table["exp_id"])) == set(zip(oracle_box["video"], oracle_box["exp_id"]))
