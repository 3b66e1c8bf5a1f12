"""Per-shard evaluation without Ray: box sources, segmentors, merging windows, summaries and outputs."""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from groprompt.config import ModelConfig
from groprompt.data.embeddings import embed_shard, embedding_identity
from groprompt.data.formats import read_videos
from groprompt.data.manifest import sha256_file, write_manifest
from groprompt.data.refshapes import RefShapesSpec, write_refshapes
from groprompt.data.shards import ShardSettings, plan_shards, read_shard, write_shard
from groprompt.evaluation import (
    ModelBoxes,
    OracleBoxes,
    evaluate_shard,
    flat_metrics,
    load_state_dict,
    merge_partials,
    submission_masks,
    summarize,
)
from groprompt.mask_eval import evaluate_folders, global_means
from groprompt.models.groprompt import FrozenEncoders, build_model
from groprompt.models.sam import FrozenSam
from groprompt.models.text import FrozenTextEncoder
from groprompt.outputs import read_index_png, write_index_png, write_submission_zip
from groprompt.segmentors import build_segmentor

MODEL = ModelConfig(sam="tiny", d_model=32, decoder_layers=2, num_heads=2, ffn_dim=64, num_queries=6)


def make_eval_shards(root: Path, max_side: int = 1024) -> tuple[Path, Path]:
    """Three 4-frame 128-pixel RefShapes videos in windows of 2 (two samples per video), with masks and tiny-SAM
    embeddings; manifests as the shard and embed stages write them. Returns (frames dir, embeddings dir)."""
    write_refshapes(root / "refshapes", RefShapesSpec(videos=3, frames=4, size=128, seed=0), valid_fraction=0.25, progress=False)
    videos = [v for split in ("train", "valid") for v in read_videos("refshapes", root / "refshapes", split, with_boxes=False)]
    settings = ShardSettings(window=2, max_side=max_side, shard_bytes=40_000, with_masks=True)
    frames_dir, embeddings_dir = root / "frames", root / "embeddings"
    frames_dir.mkdir()
    records = [write_shard(plan, frames_dir, settings) for plan in plan_shards(videos, settings)]
    columns = ("shard", "samples", "n_samples", "n_frames", "bytes", "sha256")
    write_manifest(frames_dir / "manifest.parquet", [{c: r[c] for c in columns} for r in records], {"stage": "shard"})
    sam = FrozenSam.from_name("tiny")
    embeddings_dir.mkdir()
    embedded = [embed_shard(sam, frames_dir / r["shard"], r["sha256"], embeddings_dir, 4)[0] for r in records]
    metadata = {
        "stage": "embed",
        "identity": embedding_identity(sam, "float16"),
        "frames_manifest": {"path": str(frames_dir / "manifest.parquet"), "sha256": sha256_file(frames_dir / "manifest.parquet")},
    }
    write_manifest(embeddings_dir / "manifest.parquet", [{c: r[c] for c in columns} for r in embedded], metadata)
    return frames_dir, embeddings_dir


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_eval_shards(tmp_path_factory.mktemp("eval"))


def shard_names(frames_dir: Path) -> list[str]:
    return sorted(p.name for p in frames_dir.glob("shard-*.tar"))


def run_all(shards: tuple[Path, Path], box_source, segmentor: str, png_dir: Path | None = None, sam: FrozenSam | None = None) -> pd.DataFrame:
    frames_dir, embeddings_dir = shards
    partials = []
    for name in shard_names(frames_dir):
        partials += evaluate_shard(frames_dir / name, embeddings_dir / name, box_source, build_segmentor(segmentor, sam=sam), png_dir)
    return merge_partials(partials)


@pytest.fixture(scope="module")
def oracle_box(shards: tuple[Path, Path]) -> pd.DataFrame:
    return run_all(shards, OracleBoxes(), "box")


@pytest.fixture(scope="module")
def frozen() -> FrozenEncoders:
    return FrozenEncoders(sam=FrozenSam.from_name("tiny", seed=0), text=FrozenTextEncoder())


def test_windows_merge_into_one_row_per_expression(shards: tuple[Path, Path], oracle_box: pd.DataFrame) -> None:
    frames_dir, _ = shards
    metas = [s.meta for name in shard_names(frames_dir) for s in read_shard(frames_dir / name, with_images=False)]
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


def test_grabcut_beats_the_filled_box_from_the_same_oracle_boxes(shards: tuple[Path, Path], oracle_box: pd.DataFrame) -> None:
    grabcut = run_all(shards, OracleBoxes(), "grabcut")
    assert (grabcut["box_iou"].dropna() == 1.0).all()
    assert grabcut["J"].mean() > oracle_box["J"].mean() + 0.05
    assert summarize(grabcut)["JF"] > summarize(oracle_box)["JF"]


def test_random_model_boxes_score_below_the_oracle(shards: tuple[Path, Path], oracle_box: pd.DataFrame, frozen: FrozenEncoders) -> None:
    torch.manual_seed(0)
    model = build_model(MODEL, frozen)
    boxes = ModelBoxes(model, frozen)
    assert boxes.needs_embeddings
    table = run_all(shards, boxes, "box")
    assert set(zip(table["video"], table["exp_id"])) == set(zip(oracle_box["video"], oracle_box["exp_id"]))
    assert table["box_iou"].mean() < 0.9 < oracle_box["box_iou"].mean()
    # the frozen tiny SAM as segmentor runs on the cached embeddings (its masks are meaningless, but well-formed)
    frames_dir, embeddings_dir = shards
    name = shard_names(frames_dir)[0]
    with_sam = merge_partials(evaluate_shard(frames_dir / name, embeddings_dir / name, boxes, build_segmentor("sam", sam=frozen.sam)))
    assert len(with_sam) > 0 and with_sam["J"].between(0, 1).all()
    with_box = merge_partials(evaluate_shard(frames_dir / name, embeddings_dir / name, boxes, build_segmentor("box")))
    assert np.allclose(with_sam["box_iou"], with_box["box_iou"], equal_nan=True)  # same prompts, other masks


def test_model_weights_load_from_a_checkpoint_folder_or_file(tmp_path: Path, frozen: FrozenEncoders) -> None:
    model = build_model(MODEL, frozen)
    torch.save({"model": model.state_dict(), "epoch": 1}, tmp_path / "checkpoint.pt")
    torch.save(model.state_dict(), tmp_path / "bare.pt")
    for source in (tmp_path, tmp_path / "checkpoint.pt", tmp_path / "bare.pt"):
        loaded = ModelBoxes.load(MODEL, load_state_dict(source), frozen)
        assert all(torch.equal(a, b) for a, b in zip(loaded.model.state_dict().values(), model.state_dict().values()))
    with pytest.raises(FileNotFoundError):
        load_state_dict(tmp_path / "missing")


def test_downscaled_frames_give_masks_at_the_original_size(tmp_path: Path) -> None:
    frames_dir, embeddings_dir = make_eval_shards(tmp_path, max_side=64)
    name = shard_names(frames_dir)[0]
    sample = next(read_shard(frames_dir / name))
    assert sample.frame(0).shape[:2] == (64, 64) and sample.mask(0).shape == (128, 128)
    partials = evaluate_shard(frames_dir / name, None, OracleBoxes(), build_segmentor("grabcut"), tmp_path / "png")
    assert partials and all(p["box_iou_sum"] == p["n_box_frames"] for p in partials)
    assert {read_index_png(p).shape for p in (tmp_path / "png").rglob("*.png")} == {(128, 128)}
    with pytest.raises(ValueError, match="embeddings"):
        evaluate_shard(frames_dir / name, None, OracleBoxes(), build_segmentor("sam", sam=FrozenSam.from_name("tiny")))


def test_parquet_pngs_and_submission_read_back_and_agree_with_eval_masks(shards: tuple[Path, Path], tmp_path: Path) -> None:
    frames_dir, _ = shards
    png_dir = tmp_path / "png"
    table = run_all(shards, OracleBoxes(), "grabcut", png_dir=png_dir)
    table.to_parquet(tmp_path / "metrics.parquet", index=False)
    back = pd.read_parquet(tmp_path / "metrics.parquet")
    pd.testing.assert_frame_equal(back, table)

    # DAVIS layout with one sequence per expression (<video>_<exp_id>): ground truth id 1 on the object
    gt_root, pred_root = tmp_path / "gt", tmp_path / "pred"
    for name in shard_names(frames_dir):
        for sample in read_shard(frames_dir / name):
            for expression in sample.meta["expressions"]:
                if expression["obj_id"] is None:
                    continue
                sequence = f"{sample.meta['video_id']}_{expression['exp_id']}"
                for t, frame in enumerate(sample.meta["frame_names"]):
                    ids = sample.mask(t)
                    write_index_png(gt_root / sequence / f"{frame}.png", np.where(ids == 255, 255, ids == expression["obj_id"]).astype(np.uint8))
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

    count = write_submission_zip(tmp_path / "sub.zip", submission_masks(png_dir))
    with zipfile.ZipFile(tmp_path / "sub.zip") as archive:
        names = sorted(archive.namelist())
    expected = sorted(f"Annotations/{p.relative_to(png_dir).as_posix()}" for p in png_dir.rglob("*.png"))
    assert names == expected and count == len(table) * 4
    assert all(len(n.split("/")) == 4 and n.endswith(".png") for n in names)


def test_summary_by_kind_and_iou_metrics_for_a2d() -> None:
    def partial(video: str, exp: str, kind: str | None, j: float, inter: float, union: float, dataset: str) -> dict:
        return {"video": video, "exp_id": exp, "dataset": dataset, "kind": kind, "obj_id": 1, "text": "x",
                "j_sum": j, "f_sum": j, "n_frames": 1.0, "box_iou_sum": 0.5, "n_box_frames": 1.0,
                "intersection": inter, "union": union}

    shapes = merge_partials([
        partial("v1", "0", "motion", 0.2, 2, 10, "refshapes"),
        partial("v1", "0", "motion", 0.4, 3, 10, "refshapes"),  # second window of the same expression
        partial("v2", "0", "position", 0.9, 9, 10, "refshapes"),
    ])
    assert len(shapes) == 2 and math.isclose(shapes.loc[0, "J"], 0.3) and shapes.loc[0, "n_frames"] == 2
    summary = summarize(shapes)
    assert math.isclose(summary["J"], (0.3 + 0.9) / 2) and "overall_iou" not in summary
    assert set(summary["by_kind"]) == {"motion", "position"} and math.isclose(summary["by_kind"]["position"]["JF"], 0.9)

    a2d = summarize(merge_partials([partial("a", "0", None, 0.5, 6, 10, "a2d-sentences"), partial("b", "0", None, 0.5, 1, 10, "a2d-sentences")]))
    assert math.isclose(a2d["overall_iou"], 7 / 20) and math.isclose(a2d["mean_iou"], 0.35)
    assert a2d["P@0.5"] == 0.5 and a2d["P@0.9"] == 0.0 and "by_kind" not in a2d
    metrics = flat_metrics({**a2d, "by_kind": summary["by_kind"]})
    assert metrics["P_at_0.5"] == 0.5 and "by_kind/motion/JF" in metrics and "dataset" not in metrics
    assert summarize(merge_partials([]))["n_expressions"] == 0
