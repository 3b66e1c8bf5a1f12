"""The evaluate stage through a real local Ray: shard -> embed -> evaluate (model from MLflow, oracle via pipelines/evaluate.py);
Ref-DAVIS17 per annotator."""

from __future__ import annotations

import io
import json
import math
import zipfile
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

from groprompt.checkpoints import log_trained_model
from groprompt.config import load_config, replace
from groprompt.data.refshapes import RefShapesSpec, write_refshapes
from groprompt.data.shards import ShardSettings, read_shard
from groprompt.errors import ConfigError
from groprompt.evaluation.mask_folders import evaluate_folders, global_means
from groprompt.evaluation.report import ROW_BOX_ONLY, ablation_report, oracle_row
from groprompt.files import location, open_random
from groprompt.mask_io import VOID_ID, read_index_png, write_index_png
from groprompt.models.frozen import build_frozen
from groprompt.models.groprompt import build_model
from groprompt.stages.embed import embed_shards
from groprompt.stages.evaluate import evaluate
from groprompt.stages.shard import shard_dataset
from groprompt.tracking import start_run
from pipelines.evaluate import main
from tests.helpers import mini_davis, upload_tree

REPO = Path(__file__).resolve().parents[2]


def eval_masks_layout(frames_dir: Path, png_dir: Path, gt_root: Path, pred_root: Path) -> None:
    """One DAVIS sequence per expression (``<video>_<exp_id>``): ground truth and the pipeline's PNGs."""
    for shard in sorted(frames_dir.glob("shard-*.tar")):
        for sample in read_shard(shard):
            for expression in sample.meta["expressions"]:
                if expression["obj_id"] is None:
                    continue
                sequence = f"{sample.meta['video_id']}_{expression['exp_id']}"
                for t, frame in enumerate(sample.meta["frame_names"]):
                    ids = sample.mask(t)
                    gt = (ids == expression["obj_id"]).astype("uint8")
                    gt[ids == VOID_ID] = VOID_ID
                    write_index_png(gt_root / sequence / f"{frame}.png", gt)
                    write_index_png(
                        pred_root / sequence / f"{frame}.png",
                        read_index_png(png_dir / sample.meta["video_id"] / str(expression["exp_id"]) / f"{frame}.png").astype("uint8"),
                    )


SETTINGS = ("boxes", "segmentor", "split", "checkpoint", "n_expressions", "n_frames", "JF", "J", "F", "box_iou", "by_kind")


def same_scores(remote: dict[str, Any], local: dict[str, Any]) -> bool:
    """The two summaries agree on every setting and score (``SETTINGS``) the local one holds."""
    return all(remote[key] == local[key] for key in SETTINGS if key in local)


@pytest.mark.slow
def test_evaluate_pipeline(local_ray: None, bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_refshapes(tmp_path / "refshapes", RefShapesSpec(videos=4, frames=4, size=128, seed=1), valid_fraction=0.5, progress=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    overrides = [
        f"data.root={tmp_path / 'refshapes'}",
        f"data.shards={tmp_path / 'frames'}",
        f"data.embeddings={tmp_path / 'embeddings'}",
        f"runtime.tracking_uri={uri}",
        "model.d_model=32",
        "model.ffn_dim=64",
        "model.num_heads=2",
        "model.num_queries=6",
    ]
    config = load_config([REPO / "conf" / "tiny.yaml"], overrides)
    settings = ShardSettings(window=2, shard_bytes=40_000, with_masks=True)
    shard_dataset("refshapes", str(tmp_path / "refshapes"), "valid", tmp_path / "frames" / "valid", settings)
    embed_shards(tmp_path / "frames" / "valid", tmp_path / "embeddings" / "valid", "tiny", batch_size=4)

    # a (randomly initialised) trained model, logged to MLflow as the train stage does
    torch.manual_seed(0)
    model = build_model(config.model, build_frozen(config.model))
    torch.save({"model": model.state_dict(), "epoch": 0}, tmp_path / "checkpoint.pt")
    train_run = start_run(config, "train")
    log_trained_model(train_run, tmp_path / "checkpoint.pt", config, uri)

    summary = evaluate(
        config,
        "model",
        f"mlflow:{train_run}",
        "box",
        "valid",
        tmp_path / "model",
        png_dir=tmp_path / "png",
        submission=tmp_path / "sub.zip",
    )
    table = pd.read_parquet(summary["metrics"])
    assert summary["n_expressions"] == len(table) > 0 and (table["n_frames"] == 4).all()
    assert 0 <= summary["box_iou"] < 0.9 and set(summary["by_kind"]) == set(table["kind"])
    assert math.isclose(summary["JF"], table["JF"].mean())
    assert json.loads((tmp_path / "model" / "summary.json").read_text())["run_id"] == summary["run_id"]

    # J&F of the pipeline equals eval-masks on the PNGs it wrote
    eval_masks_layout(tmp_path / "frames" / "valid", tmp_path / "png", tmp_path / "gt", tmp_path / "pred")
    assert math.isclose(global_means(evaluate_folders(tmp_path / "gt", tmp_path / "pred"))["JF_mean"], summary["JF"], abs_tol=1e-9)
    with zipfile.ZipFile(tmp_path / "sub.zip") as archive:
        names = archive.namelist()
    assert len(names) == 4 * len(table)
    assert {tuple(n.split("/")[:3]) for n in names} == {("Annotations", r.video, r.exp_id) for r in table.itertuples()}

    import mlflow

    run = mlflow.MlflowClient(uri).get_run(summary["run_id"])
    assert math.isclose(run.data.metrics["eval/JF"], summary["JF"]) and run.data.params["eval.boxes"] == "model"
    assert {a.path for a in mlflow.MlflowClient(uri).list_artifacts(summary["run_id"], "evaluation")} == {
        "evaluation/metrics.parquet",
        "evaluation/summary.json",
    }
    # the same evaluation with every output in a bucket: the same scores, PNGs read back from there into the zip,
    # and the tables logged to MLflow from there
    remote = evaluate(config, "model", f"mlflow:{train_run}", "box", "valid", f"{bucket}/model", submission=f"{bucket}/sub.zip")
    assert same_scores(remote, summary) and remote["metrics"] == f"{bucket}/model/metrics.parquet"
    with open_random(location(remote["metrics"])) as handle:
        pd.testing.assert_frame_equal(pd.read_parquet(handle), table)
    with zipfile.ZipFile(io.BytesIO((location(bucket) / "sub.zip").read_bytes())) as archive:
        assert sorted(archive.namelist()) == sorted(names)
    assert {a.path for a in mlflow.MlflowClient(uri).list_artifacts(remote["run_id"], "evaluation")} == {
        "evaluation/metrics.parquet",
        "evaluation/summary.json",
    }

    with pytest.raises(ConfigError, match="eval.boxes='model'"):  # refused before any work: the run holds another evaluation
        evaluate(config, "oracle", segmentor="box", split="valid", out_dir=tmp_path / "refused", run_id=summary["run_id"])
    assert not (tmp_path / "refused").exists()

    # the CLI, ground-truth boxes through GrabCut, no MLflow: the upper bound, and the report
    code = main(
        [
            "--config",
            str(REPO / "conf" / "tiny.yaml"),
            "--boxes",
            "oracle",
            "--segmentor",
            "grabcut",
            "--split",
            "valid",
            "--out",
            str(tmp_path / "oracle"),
            "--no-mlflow",
            *overrides,
        ]
    )
    assert code == 0
    assert "stands in for SAM" in capsys.readouterr().out
    oracle = json.loads((tmp_path / "oracle" / "summary.json").read_text())
    assert oracle["box_iou"] == 1.0 and oracle["JF"] > summary["JF"] and oracle["run_id"] is None
    report = ablation_report({ROW_BOX_ONLY: summary, oracle_row("grabcut"): oracle})
    assert "| GT box + grabcut | 100.0 |" in report


@pytest.mark.slow
def test_ref_davis_annotators_through_the_stage(local_ray: None, shared_data: Path, bucket: str, tmp_path: Path) -> None:
    # Two single-object ref-davis-mini videos, cut into windows of 20 frames over several shards. Every annotator's
    # expressions name the one object with the same oracle box, so each annotator scores what the per-expression
    # identity matching gives, and eval-masks --task unsupervised on an annotator's folder agrees.
    root = mini_davis(shared_data, tmp_path)
    config = load_config(
        [REPO / "conf" / "base.yaml", REPO / "conf" / "data" / "ref-davis17.yaml"],
        [f"data.root={root}", f"data.shards={tmp_path / 'frames'}"],
    )
    shard_dataset(
        "ref-davis17", str(root), "valid", tmp_path / "frames" / "valid", ShardSettings(window=20, shard_bytes=4_000_000, with_masks=True)
    )
    summary = evaluate(config, "oracle", segmentor="box", split="valid", out_dir=tmp_path / "out", track=False)
    davis = summary["davis_unsupervised"]
    assert sorted(davis) == ["anno_0", "anno_1", "anno_2", "anno_3", "mean", "n_objects", "n_sequences"]
    assert (davis["n_sequences"], davis["n_objects"]) == (2, 2) and summary["n_expressions"] == 8
    for values in (davis["anno_0"], davis["anno_3"], davis["mean"]):
        assert values["JF"] == pytest.approx(summary["JF"]) and values["J"] == pytest.approx(summary["J"])
    scores = evaluate_folders(root / "valid" / "Annotations", tmp_path / "out" / "ref-davis17-annotators" / "anno_2", task="unsupervised")
    assert global_means(scores)["JF_mean"] == pytest.approx(davis["anno_2"]["JF"])

    # the dataset (its ground truth) and the annotators' PNGs in a bucket, scored from there
    upload_tree(root, f"{bucket}/davis")
    in_bucket = replace(config, **{"data.root": f"{bucket}/davis"})
    remote = evaluate(in_bucket, "oracle", segmentor="box", split="valid", out_dir=f"{bucket}/out", track=False)
    assert remote["davis_unsupervised"] == davis and same_scores(remote, summary)
