"""The sweep's winner under a real ASHA scheduler that stops trials at different epochs (a real Ray Tune run of
trials that report known histories, one at a time so that ASHA's decisions are fixed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from groprompt.config import load_config
from groprompt.stages.sweep import METRIC, asha, rank_trials, result_row
from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.slow

# val_box_iou after each epoch, by lambda_f. ASHA with 4 epochs, grace period 1 and reduction factor 2 has rungs after
# epochs 1 and 2, and stops a trial whose result there is below the median of the results recorded there before it:
# 0.01 stops after epoch 1 (0.10 < 0.30); 0.1 passes epoch 1 (0.35 > median(0.30, 0.10)) and stops after epoch 2
# (0.36 < 0.40); 0.0 runs all 4 epochs. At the last epoch all three reached (1), 0.1 led with 0.35.
HISTORIES = {0.0: [0.30, 0.40, 0.50, 0.60], 0.01: [0.10, 0.20, 0.90, 0.90], 0.1: [0.35, 0.36, 0.99, 0.99]}


def known_history(config: dict) -> None:
    from ray import tune

    for epoch, value in enumerate(HISTORIES[config["lambda_f"]]):
        tune.report({METRIC: value, "epoch": epoch})


def test_the_best_trial_is_the_best_last_result_of_trials_asha_stopped_at_different_epochs(local_ray: None, tmp_path: Path) -> None:
    from ray import tune

    config = load_config([REPO_ROOT / "conf" / "tiny.yaml"], ["train.epochs=4", "sweep.grace_period=1", "sweep.reduction_factor=2"])
    tuner = tune.Tuner(
        tune.with_resources(known_history, {"cpu": 0.5}),
        param_space={"lambda_f": tune.grid_search(list(HISTORIES)), "lambda_v": 0.0},
        tune_config=tune.TuneConfig(metric=METRIC, mode="max", max_concurrent_trials=1, scheduler=asha(config)),
        run_config=tune.RunConfig(name="known-histories", storage_path=str(tmp_path)),
    )
    ranked = rank_trials([result_row(result) for result in tuner.fit()])
    assert [(row["lambda_f"], row["epochs"], row[METRIC]) for row in ranked] == [(0.0, 4, 0.60), (0.1, 2, 0.36), (0.01, 1, 0.10)]
