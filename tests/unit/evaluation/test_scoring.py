"""Scoring shards without Ray: windows merged per expression, oracle box scores, downscaled frames, PNGs vs eval-masks,
A2D frame samples by hand, shards grouped into whole videos."""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from groprompt.data.formats import read_videos
from groprompt.data.refshapes import RefShapesSpec, write_refshapes
from groprompt.data.shards import ShardSample, ShardSettings, plan_shards, read_shard
from groprompt.evaluation.aggregate import merge_partials, summarize
from groprompt.evaluation.box_sources import OracleBoxes, Prompts, certain
from groprompt.evaluation.mask_folders import evaluate_folders, global_means
from groprompt.evaluation.scoring import evaluate_shard, score_sample, video_of_sample, whole_video_groups
from groprompt.mask_io import VOID_ID, read_index_png, write_index_png
from groprompt.models.sam import FrozenSam
from groprompt.models.segmentors import build_segmentor


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
    one_object = oracle_box[oracle_box["kind"] != "multi-object"]  # a filled union box of several objects is mostly background
    assert (oracle_box["kind"] == "multi-object").any() and oracle_box["J"].between(0.0, 1.0, inclusive="right").all()
    assert one_object["J"].between(0.4, 1.0).all() and oracle_box["J"].mean() < 0.95  # squares fill their box; other shapes do not
    assert np.allclose(oracle_box["JF"], (oracle_box["J"] + oracle_box["F"]) / 2)
    for row in oracle_box.itertuples():  # one frame sample per frame where the object is present
        assert len(row.sample_intersections) == len(row.sample_unions) == row.n_box_frames
        assert all(0 < i <= u for i, u in zip(row.sample_intersections, row.sample_unions))


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

    # DAVIS layout with one sequence per expression (<video>_<exp_id>): ground truth id 1 on the object, or on the objects
    # of a sentence about several (the sample's "groups")
    gt_root, pred_root = tmp_path / "gt", tmp_path / "pred"
    for frames, _ in shard_pairs:
        for sample in read_shard(frames):
            for expression in sample.meta["expressions"]:
                if expression["obj_id"] is None:
                    continue
                sequence = f"{sample.meta['video_id']}_{expression['exp_id']}"
                for t, frame in enumerate(sample.meta["frame_names"]):
                    ids = sample.mask(t)
                    objects = sample.meta.get("groups", {}).get(str(expression["obj_id"]), [expression["obj_id"]])
                    gt = np.where(ids == VOID_ID, VOID_ID, np.isin(ids, objects)).astype(np.uint8)
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


def encoded_ids(ids: np.ndarray) -> bytes:
    """An id map as the PNG bytes a shard stores."""
    buffer = io.BytesIO()
    Image.fromarray(ids.astype(np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass(frozen=True)
class FixedBoxes:
    """The same given per-frame boxes (T, 4) for every expression."""

    per_frame: np.ndarray

    @property
    def needs_embeddings(self) -> bool:
        return False

    @property
    def needs_frames(self) -> bool:
        return False

    def prompts(
        self, meta: dict[str, Any], expressions: list[dict[str, Any]], embeddings: np.ndarray | None, frames: list[np.ndarray] | None = None
    ) -> Prompts:
        return certain(np.stack([self.per_frame] * len(expressions)))


def test_a2d_frame_samples_leave_out_frames_where_the_instance_is_absent() -> None:
    # One A2D sentence over 4 frames of 10x10 pixels, prompts filled as boxes:
    #   frame 0: annotated, object rows 0-4 (50 px), predicted rows 0-9 (100 px): sample I/U = 50/100 = 0.5, J = 0.5
    #   frame 1: annotated, object absent, predicted rows 0-1 (20 px): no sample (J = 0, F = 0)
    #   frame 2: not annotated (void): nothing
    #   frame 3: annotated, object rows 0-3 (40 px), predicted the same: sample 40/40 = 1, J = F = 1
    # Samples: overall IoU = 90/140, mean IoU = (0.5 + 1)/2 = 0.75, P@0.5 = 1/2 (0.5 is not above 0.5), P@0.9 = 1/2.
    # (Summed over the expression's annotated frames, as before, it would have been 90/160 and P@0.5 = 1.)
    ids = [np.zeros((10, 10), int) for _ in range(4)]
    ids[0][:5], ids[2][:], ids[3][:4] = 1, VOID_ID, 1
    meta = {
        "key": "v__00000", "dataset": "a2d-sentences", "video_id": "v", "start": 0, "height": 10, "width": 10,
        "frame_names": ["00001", "00002", "00003", "00004"], "annotated": [True, True, False, True],
        "expressions": [{"exp_id": "0", "text": "a man jumping", "obj_id": 1, "kind": ""}],
        "boxes": {"1": [[0, 0, 10, 5], None, None, [0, 0, 10, 4]]},
    }  # fmt: skip
    sample = ShardSample("v__00000", meta, masks=[encoded_ids(m) for m in ids])
    predicted = np.array([[0, 0, 10, 10], [0, 0, 10, 2], [0, 0, 10, 10], [0, 0, 10, 4]], dtype=float)
    rows = score_sample(sample, meta["expressions"], None, FixedBoxes(predicted), build_segmentor("box"))
    table = merge_partials(rows)
    assert list(table.loc[0, "sample_intersections"]) == [50, 40] and list(table.loc[0, "sample_unions"]) == [100, 40]
    assert table.loc[0, "n_frames"] == 3 and table.loc[0, "J"] == pytest.approx((0.5 + 0 + 1) / 3)
    summary = summarize(table)
    assert summary["n_samples"] == 2
    assert summary["overall_iou"] == pytest.approx(90 / 140) and summary["mean_iou"] == pytest.approx(0.75)
    assert summary["P@0.5"] == 0.5 and summary["P@0.9"] == 0.5


def test_whole_video_groups_join_shards_that_cut_a_video() -> None:
    shards = [
        {"frames": "0", "samples": ["a__00000", "a__00036"]},
        {"frames": "1", "samples": ["a__00072", "b__00000"]},  # a continues here
        {"frames": "2", "samples": ["c__00000"]},
        {"frames": "3", "samples": []},  # every window rejected
        {"frames": "4", "samples": ["my__video__00000"]},  # "__" inside a video id
        {"frames": "5", "samples": ["my__video__00036"]},
    ]
    groups = whole_video_groups(shards)
    assert [[s["frames"] for s in group] for group in groups] == [["0", "1"], ["2"], ["3"], ["4", "5"]]
    assert video_of_sample("my__video__00036") == "my__video"


def test_plan_shards_may_cut_a_video_that_evaluation_then_groups(tmp_path: Path) -> None:
    write_refshapes(tmp_path / "shapes", RefShapesSpec(videos=2, frames=5, size=128, seed=0), valid_fraction=0.5, progress=False)
    videos = list(read_videos("refshapes", tmp_path / "shapes", "train", with_boxes=False)) + list(
        read_videos("refshapes", tmp_path / "shapes", "valid", with_boxes=False)
    )
    plans = plan_shards(videos, ShardSettings(window=2, shard_bytes=40_000, with_masks=True))
    rows = [{"samples": [f"{v.video_id}__{a:05d}" for v, a, _ in plan.windows]} for plan in plans]
    first_video = videos[0].video_id
    assert sum(any(video_of_sample(k) == first_video for k in row["samples"]) for row in rows) == 2  # cut in two
    groups = whole_video_groups(rows)
    assert all(sum(any(video_of_sample(k) == v.video_id for row in g for k in row["samples"]) for g in groups) == 1 for v in videos)
