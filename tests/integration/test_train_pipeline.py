"""The train and sweep stages through a real local Ray and a SQLite MLflow store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
import torch

from groprompt.boxes import box_iou, cxcywh_to_xyxy
from groprompt.checkpoints import load_trained
from groprompt.config import Config, replace
from groprompt.data.shards import read_shard
from groprompt.data.targets import normalised_boxes, referring_expressions
from groprompt.errors import DataError
from groprompt.stages.sweep import sweep
from groprompt.stages.train import train

pytestmark = pytest.mark.slow


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


def test_two_workers_learn_and_log_to_mlflow(refshapes_config: Config, learned: dict[str, Any]) -> None:
    outcome = learned
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


def test_sweep_logs_two_child_runs_under_one_parent(refshapes_config: Config) -> None:
    # two trials, one per CPU (as the demo's sweep): the suite must stay under 20 minutes on 2 cores
    grid = {"sweep.mode": "grid", "sweep.lambda_f": [0.01], "sweep.lambda_v": [0.0, 0.1], "sweep.grace_period": 1}
    swept = replace(refshapes_config, **grid, **{"sweep.reduction_factor": 2, "train.epochs": 1, "train.name": "sweep"})
    outcome = sweep(swept)
    assert len(outcome["rows"]) == 2
    assert {(row["lambda_f"], row["lambda_v"]) for row in outcome["rows"]} == {(0.01, 0.0), (0.01, 0.1)}
    mlflow.set_tracking_uri(refshapes_config.runtime.tracking_uri)
    children = mlflow.search_runs(filter_string=f"tags.mlflow.parentRunId = '{outcome['parent_run_id']}'", search_all_experiments=True)
    assert len(children) == 2
    # one epoch each (the suite's time): ASHA stops none; ranking trials it stopped early is tested in tests/unit/stages/test_sweep.py
    statuses = sorted(children["status"])
    assert set(statuses) <= {"FINISHED", "KILLED"} and "FINISHED" in statuses, statuses
    for child in children["run_id"]:
        assert "loss_curve.png" in {a.path for a in mlflow.MlflowClient().list_artifacts(child)}
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(outcome["parent_run_id"])}
    assert {"sweep_results.csv", "sweep_heatmap.png", "best.yaml"} <= artifacts
    best = outcome["best"]
    header = (Path(swept.train.storage_path) / "sweep-sweep" / "best.yaml").read_text().splitlines()[0]
    assert header == f"# The sweep's best trial: lambda_f={best['lambda_f']} lambda_v={best['lambda_v']}, chosen by its own last result"
    assert best["val_box_iou"] == max(row["val_box_iou"] for row in outcome["rows"])


def test_a_user_error_in_the_workers_fails_the_run_once_with_its_message(refshapes_config: Config) -> None:
    # embeddings were made with sam_seed 0: another seed is other weights, refused in every worker
    mismatched = replace(refshapes_config, **{"train.name": "mismatch", "model.sam_seed": 5, "train.max_failures": 2})
    with pytest.raises(DataError, match="embeddings"):
        train(mismatched)
    mlflow.set_tracking_uri(refshapes_config.runtime.tracking_uri)
    (failed,) = mlflow.search_runs(filter_string="attributes.run_name = 'mismatch'", search_all_experiments=True)["status"]
    assert failed == "FAILED"
