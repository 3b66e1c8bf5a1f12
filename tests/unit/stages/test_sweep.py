"""Sweep trials compared at equal budget."""

from __future__ import annotations

import pytest

from groprompt.config import load_config
from groprompt.stages.sweep import at_common_epoch, trial_resources
from tests.helpers import REPO_ROOT


def test_trials_are_ranked_after_the_last_epoch_all_of_them_reached() -> None:
    rows = [
        {"lambda_f": 0.0, "lambda_v": 0.0, "epochs": 3, "history": [0.2, 0.3, 0.6]},  # ran on: best at its own end
        {"lambda_f": 0.01, "lambda_v": 0.1, "epochs": 1, "history": [0.35]},  # stopped by ASHA after epoch 1
        {"lambda_f": 0.01, "lambda_v": 0.0, "epochs": 2, "history": [0.25, 0.4]},
    ]
    ranked = at_common_epoch(rows)
    # every trial reached epoch 1: 0.35 > 0.25 > 0.2, whatever the longer runs did later
    assert [(r["lambda_f"], r["lambda_v"]) for r in ranked] == [(0.01, 0.1), (0.01, 0.0), (0.0, 0.0)]
    assert [r["val_box_iou"] for r in ranked] == [0.35, 0.25, 0.2]
    assert [r["last_val_box_iou"] for r in ranked] == [0.35, 0.4, 0.6]
    assert {r["common_epochs"] for r in ranked} == {1} and all("history" not in r for r in ranked)


def test_equal_length_trials_compare_at_the_end() -> None:
    rows = [{"lambda_f": f, "lambda_v": 0.0, "epochs": 2, "history": [0.1, value]} for f, value in ((0.0, 0.5), (0.1, 0.7))]
    assert [r["val_box_iou"] for r in at_common_epoch(rows)] == pytest.approx([0.7, 0.5])


def test_a_trial_reserves_a_gpu_only_when_training_uses_one() -> None:
    demo = REPO_ROOT / "conf" / "demo.yaml"
    assert trial_resources(load_config([demo], ["sweep.cpus_per_trial=3"])) == {"cpu": 3}
    assert trial_resources(load_config([demo], ["sweep.cpus_per_trial=3", "train.use_gpu=true"])) == {"cpu": 3, "gpu": 1}
