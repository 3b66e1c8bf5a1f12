"""The train and sweep stages through a real local Ray and a SQLite MLflow store."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch

from groprompt.boxes import box_iou, cxcywh_to_xyxy
from groprompt.checkpoints import load_trained
from groprompt.config import Config, load_config, replace, with_absolute_paths
from groprompt.data.clips import normalised_boxes, referring_expressions
from groprompt.data.refshapes import RefShapesSpec, write_refshapes
from groprompt.data.shards import ShardSettings, read_shard
from groprompt.errors import DataError
from groprompt.stages.embed import embed_shards
from groprompt.stages.shard import shard_dataset
from groprompt.stages.sweep import sweep
from groprompt.stages.train import train
from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def refshapes_config(local_ray: None, tmp_path_factory: pytest.TempPathFactory) -> Config:
    """A small RefShapes set, sharded and embedded with the tiny SAM, and a configuration pointing at it."""
    root = tmp_path_factory.mktemp("refshapes")
    write_refshapes(root / "data", RefShapesSpec(videos=16, frames=8, size=256, seed=0), valid_fraction=0.25, progress=False)
    for split in ("train", "valid"):
        settings = ShardSettings(window=8, max_side=256, shard_bytes=2**20, with_masks=split == "valid")
        shard_dataset("refshapes", str(root / "data"), split, root / "shards" / split, settings)
        embed_shards(root / "shards" / split, root / "embeddings" / split, sam_name="tiny")
    overrides = [
        f"data.root={root / 'data'}",
        f"data.shards={root / 'shards'}",
        f"data.embeddings={root / 'embeddings'}",
        f"train.storage_path={root / 'runs'}",
        f"runtime.tracking_uri=sqlite:///{root / 'mlflow.db'}",
        "train.epochs=3",
        "train.batch_size=8",
        "train.lr=1e-3",
    ]
    return with_absolute_paths(load_config([REPO_ROOT / "conf" / "tiny.yaml"], overrides))


def mean_box_baseline(config: Config) -> float:
    """Validation IoU of always predicting the mean training box (the trivial baseline)."""

    def boxes_of(split: str) -> list[np.ndarray]:
        found = []
        for shard in sorted((Path(config.data.shards) / split).glob("*.tar")):
            for sample in read_shard(shard, with_images=False):
                frames = range(len(sample.meta["frame_names"]))
                for expression in referring_expressions(sample.meta):
                    boxes, valid = normalised_boxes(sample.meta, expression["obj_id"], frames)
                    found.append(boxes[valid])
        return found

    mean = np.concatenate(boxes_of("train")).mean(0)
    targets = torch.from_numpy(np.concatenate(boxes_of("valid")))
    return float(box_iou(cxcywh_to_xyxy(torch.from_numpy(mean)[None]), cxcywh_to_xyxy(targets)).mean())


def test_two_workers_learn_and_log_to_mlflow(refshapes_config: Config) -> None:
    outcome = train(replace(refshapes_config, **{"train.name": "learn"}))
    history = outcome["history"]
    assert [int(row["epoch"]) for row in history] == [0, 1, 2]
    assert history[-1]["loss_total"] < history[0]["loss_total"]
    baseline = mean_box_baseline(refshapes_config)
    assert history[-1]["val_box_iou"] > baseline + 0.02, (history[-1]["val_box_iou"], baseline)

    mlflow.set_tracking_uri(refshapes_config.runtime.tracking_uri)
    run = mlflow.get_run(outcome["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["loss.lambda_f"] == "0.01" and run.data.params["train.num_workers"] == "2"
    client = mlflow.MlflowClient()
    for name in ("loss_total", "loss_l1", "loss_giou", "loss_textcon", "loss_modalcon", "epoch_loss_total", "val_box_iou"):
        assert client.get_metric_history(outcome["run_id"], name), name
    assert len(client.get_metric_history(outcome["run_id"], "loss_l1")) > 3  # per step and per epoch
    artifacts = {a.path for a in client.list_artifacts(outcome["run_id"])}
    assert {"checkpoint", "model", "loss_curve.png"} <= artifacts
    weights = load_trained(f"mlflow:{outcome['run_id']}", refshapes_config.runtime.tracking_uri)
    assert weights.model_config == refshapes_config.model and any(k.startswith("proposal.") for k in weights.state)
    pytest.learned = history  # the uninterrupted reference for the fault-tolerance test


def test_worker_failure_resumes_from_the_last_checkpoint(refshapes_config: Config) -> None:
    reference = getattr(pytest, "learned", None)
    if reference is None:
        reference = train(replace(refshapes_config, **{"train.name": "reference"}))["history"]
    failing = replace(refshapes_config, **{"train.name": "failing", "train.fail_once_at_epoch": 1, "train.max_failures": 1})
    outcome = train(failing)
    assert (Path(failing.train.storage_path) / "failing" / "injected-failure").exists()  # it did fail once
    assert [int(row["epoch"]) for row in outcome["history"]] == [0, 1, 2]
    for key in ("loss_total", "val_box_iou"):
        assert outcome["history"][-1][key] == pytest.approx(reference[-1][key], rel=1e-3, abs=1e-4), key


def test_sweep_logs_four_child_runs_under_one_parent(refshapes_config: Config) -> None:
    config = load_config([REPO_ROOT / "conf" / "sweep" / "demo.yaml"])
    swept = replace(
        refshapes_config,
        **{"sweep.lambda_f": config.sweep.lambda_f, "sweep.lambda_v": config.sweep.lambda_v, "train.epochs": 2, "train.name": "sweep"},
    )
    outcome = sweep(swept)
    assert len(outcome["rows"]) == 4
    assert {(row["lambda_f"], row["lambda_v"]) for row in outcome["rows"]} == {(0.0, 0.0), (0.0, 0.1), (0.01, 0.0), (0.01, 0.1)}
    mlflow.set_tracking_uri(refshapes_config.runtime.tracking_uri)
    children = mlflow.search_runs(filter_string=f"tags.mlflow.parentRunId = '{outcome['parent_run_id']}'", search_all_experiments=True)
    assert len(children) == 4
    # ASHA (grace 1, reduction 2, 2 epochs) lets the better half finish: the others end KILLED, none FAILED
    statuses = sorted(children["status"])
    assert set(statuses) <= {"FINISHED", "KILLED"} and "FINISHED" in statuses, statuses
    for child in children["run_id"]:
        assert "loss_curve.png" in {a.path for a in mlflow.MlflowClient().list_artifacts(child)}
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(outcome["parent_run_id"])}
    assert {"sweep_results.csv", "sweep_heatmap.png", "best.yaml"} <= artifacts
    assert (Path(swept.train.storage_path) / "sweep-sweep" / "best.yaml").is_file()


def test_a_user_error_in_the_workers_fails_the_run_once_with_its_message(refshapes_config: Config) -> None:
    # embeddings were made with sam_seed 0: another seed is other weights, refused in every worker
    mismatched = replace(refshapes_config, **{"train.name": "mismatch", "model.sam_seed": 5, "train.max_failures": 2})
    with pytest.raises(DataError, match="embeddings"):
        train(mismatched)
    mlflow.set_tracking_uri(refshapes_config.runtime.tracking_uri)
    (failed,) = mlflow.search_runs(filter_string="attributes.run_name = 'mismatch'", search_all_experiments=True)["status"]
    assert failed == "FAILED"
