"""Sweep trials ranked by their own last result; best.yaml says which trial and why; what a trial reserves."""

from __future__ import annotations

from pathlib import Path

from groprompt.config import load_config
from groprompt.stages.sweep import best_yaml, rank_trials, trial_resources
from tests.helpers import REPO_ROOT


def test_trials_are_ranked_by_their_own_last_result() -> None:
    rows = [
        {"lambda_f": 0.0, "lambda_v": 0.0, "epochs": 3, "history": [0.2, 0.3, 0.6]},  # ran on: best at its own end
        {"lambda_f": 0.01, "lambda_v": 0.1, "epochs": 1, "history": [0.35]},  # stopped by ASHA after epoch 1
        {"lambda_f": 0.01, "lambda_v": 0.0, "epochs": 2, "history": [0.45, 0.4]},  # stopped after epoch 2, past its best
    ]
    ranked = rank_trials(rows)
    # last results: 0.6 > 0.4 > 0.35 (at the common epoch 1 the order would have been the reverse)
    assert [(r["lambda_f"], r["lambda_v"]) for r in ranked] == [(0.0, 0.0), (0.01, 0.0), (0.01, 0.1)]
    assert [r["val_box_iou"] for r in ranked] == [0.6, 0.4, 0.35]
    assert [r["best_val_box_iou"] for r in ranked] == [0.6, 0.45, 0.35]
    assert [r["epochs"] for r in ranked] == [3, 2, 1] and all("history" not in r for r in ranked)


def test_best_yaml_names_the_trial_and_the_rule_and_loads_as_a_configuration(tmp_path: Path) -> None:
    config = load_config([REPO_ROOT / "conf" / "demo.yaml"], ["loss.lambda_f=0.01", "loss.lambda_v=0.1"])
    row = {"lambda_f": 0.01, "lambda_v": 0.1, "epochs": 12, "val_box_iou": 0.4567}
    text = best_yaml(config, row, epochs=12)
    assert text.splitlines()[0] == "# The sweep's best trial: lambda_f=0.01 lambda_v=0.1, chosen by its own last result"
    assert "(val_box_iou 0.4567 after epoch 12 of 12; Ray Tune's scope='last')" in text.splitlines()[1]
    (tmp_path / "best.yaml").write_text(text)
    assert load_config([tmp_path / "best.yaml"]) == config


def test_a_trial_reserves_a_gpu_only_when_training_uses_one() -> None:
    demo = REPO_ROOT / "conf" / "demo.yaml"
    assert trial_resources(load_config([demo], ["sweep.cpus_per_trial=3"])) == {"cpu": 3}
    assert trial_resources(load_config([demo], ["sweep.cpus_per_trial=3", "train.use_gpu=true"])) == {"cpu": 3, "gpu": 1}
