"""Scoring shards without Ray: windows merged per expression, oracle box scores, downscaled frames, PNGs vs eval-masks."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from groprompt.data.shards import read_shard
from groprompt.evaluation.aggregate import summarize
from groprompt.evaluation.box_sources import OracleBoxes
from groprompt.evaluation.scoring import evaluate_shard
from groprompt.mask_eval import evaluate_folders, global_means
from groprompt.models.sam import FrozenSam
from groprompt.outputs import VOID_ID, read_index_png, write_index_png
from groprompt.segmentors import build_segmentor


def test_windows_merge_into_one_row_per_expression(shard_pairs: list[tuple[Path, Path]], oracle_box: pd.DataFrame) -> None:
    metas = [s.meta for frames, _ in shard_pairs for s in read_shard(frames, with_images=False)]
    assert len(metas) == 6  # three videos, two windows each
    expected = {(m["video_id"], str(e["exp_id"])) for m in metas for e in m["expressions"] if e["obj_id"] is not None}
    assert set(zip(oracle_box["video"], oracle_box["exp_id"])) == expected
    assert (oracle_box["n_frames"] == 4).all()  # both windows of each video counted
    assert oracle_box["kind"].map(lambda k: isinstance(k, str)).all()


def test_oracle_boxes_have_box_iou_one_and_box_masks_score_below_one(oracle_box: pd.DataFrame) -> None:
    scored = oracle_box[oracle_box["n_box_frames"] > 0]
    assert len(scored) > 0
    assert (scored["box_iou"] == 1.0).all()
    assert oracle_box["J"].between(0.4, 1.0).all() and oracle_box["J"].mean() < 0.95  # squares fill their box; other shapes do not
    assert np.allclose(oracle_box["JF"], (oracle_box["J"] + oracle_box["F"]) / 2)
    assert (oracle_box["intersection"] <= oracle_box["union"]).all()


def test_grabcut_beats_the_filled_box_from_the_same_oracle_boxes(
    oracle_box: pd.DataFrame, oracle_grabcut: tuple[pd.DataFrame, Path]
) -> None:
    grabcut, _ = oracle_grabcut
    assert (grabcut["box_iou"].dropna() == 1.0).all()
    assert grabcut["J"].mean() > oracle_box["J"].mean() + 0.05
    assert summarize(grabcut)["JF"] > summarize(oracle_box)["JF"]


def test_downscaled_frames_give_masks_at_the_original_size(tmp_path: Path, make_shards: Callable[..., tuple[Path, Path]]) -> None:
    frames_dir, _ = make_shards(tmp_path, max_side=64)
    frames = sorted(frames_dir.glob("shard-*.tar"))[0]
    sample = next(read_shard(frames))
    assert sample.frame(0).shape[:2] == (64, 64) and sample.mask(0).shape == (128, 128)
    partials = evaluate_shard(frames, None, OracleBoxes(), build_segmentor("grabcut"), tmp_path / "png")
    assert partials and all(p["box_iou_sum"] == p["n_box_frames"] for p in partials)
    assert {read_index_png(p).shape for p in (tmp_path / "png").rglob("*.png")} == {(128, 128)}
    with pytest.raises(ValueError, match="embeddings"):
        evaluate_shard(frames, None, OracleBoxes(), build_segmentor("sam", sam=FrozenSam.from_name("tiny")))


def test_parquet_and_pngs_read_back_and_agree_with_eval_masks(
    shard_pairs: list[tuple[Path, Path]], oracle_grabcut: tuple[pd.DataFrame, Path], tmp_path: Path
) -> None:
    table, png_dir = oracle_grabcut
    table.to_parquet(tmp_path / "metrics.parquet", index=False)
    back = pd.read_parquet(tmp_path / "metrics.parquet")
    pd.testing.assert_frame_equal(back, table)

    # DAVIS layout with one sequence per expression (<video>_<exp_id>): ground truth id 1 on the object
    gt_root, pred_root = tmp_path / "gt", tmp_path / "pred"
    for frames, _ in shard_pairs:
        for sample in read_shard(frames):
            for expression in sample.meta["expressions"]:
                if expression["obj_id"] is None:
                    continue
                sequence = f"{sample.meta['video_id']}_{expression['exp_id']}"
                for t, frame in enumerate(sample.meta["frame_names"]):
                    ids = sample.mask(t)
                    gt = np.where(ids == VOID_ID, VOID_ID, ids == expression["obj_id"]).astype(np.uint8)
                    write_index_png(gt_root / sequence / f"{frame}.png", gt)
                    pred = read_index_png(png_dir / sample.meta["video_id"] / str(expression["exp_id"]) / f"{frame}.png")
                    assert set(np.unique(pred)) <= {0, 1}
                    write_index_png(pred_root / sequence / f"{frame}.png", pred)
    scores = {s.sequence: s for s in evaluate_folders(gt_root, pred_root)}
    assert len(scores) == len(table)
    for row in table.itertuples():
        seq = scores[f"{row.video}_{row.exp_id}"]
        assert seq.n_frames == row.n_frames
        assert math.isclose(seq.j_mean, row.J, abs_tol=1e-9) and math.isclose(seq.f_mean, row.F, abs_tol=1e-9)
    means, summary = global_means(list(scores.values())), summarize(table)
    assert math.isclose(means["JF_mean"], summary["JF"], abs_tol=1e-9)
