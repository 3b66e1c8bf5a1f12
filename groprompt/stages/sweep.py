"""The sweep stage: the contrastive loss weights lambda_f and lambda_v searched with Ray Tune (ASHA on val_box_iou).

The best trial is the one whose own last result is best (``rank_trials``).

Each trial trains on one worker (trials run side by side, as many as the cluster's CPUs allow) and logs a child
run under one parent run; the parent gets a results table, a heatmap, and the best configuration.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import yaml

from groprompt.cluster import cluster_cpus
from groprompt.config import Config, from_dict, replace, to_dict
from groprompt.data.formats import check_training_splits
from groprompt.errors import ConfigError
from groprompt.files import write_text_atomic
from groprompt.mask_io import markdown_table
from groprompt.stages.sessions import RaySession
from groprompt.stages.train import run_storage
from groprompt.tracking import epoch_history, log_loss_curve, log_params, run_status, start_run, with_tracking_uri
from groprompt.training.loop import run_training
from groprompt.viz.sweep_heatmap import sweep_heatmap

METRIC = "val_box_iou"


TRIAL_TAG = "groprompt.trial_id"


def trial(params: dict[str, float], base_tree: dict[str, Any], parent_run_id: str) -> None:
    """One trial: the base configuration with this trial's weights, as a child run of the sweep.

    The child run stays RUNNING here: ASHA may stop the trial between two epochs, so its terminal status
    (FINISHED, KILLED or FAILED) is set by the driver from the trial's result (``_close_child_runs``).
    """
    import ray.tune

    changes = {"loss.lambda_f": params["lambda_f"], "loss.lambda_v": params["lambda_v"], "train.num_workers": 1}
    config = replace(from_dict(base_tree), **changes)
    run_name = f"lambda_f={params['lambda_f']:.3g} lambda_v={params['lambda_v']:.3g}"
    tags = {TRIAL_TAG: ray.tune.get_context().get_trial_id()}
    run_id = start_run(config, run_name, parent_run_id=parent_run_id, tags=tags)
    run_training(config, RaySession(distributed=False, use_gpu=config.train.use_gpu), run_id)


def search_space(config: Config) -> dict[str, Any]:
    """The Tune search space declared by ``config.sweep``."""
    from ray import tune

    sweep = config.sweep
    if sweep.mode == "grid":
        return {"lambda_f": tune.grid_search(list(sweep.lambda_f)), "lambda_v": tune.grid_search(list(sweep.lambda_v))}
    for name, bounds in (("lambda_f", sweep.lambda_f), ("lambda_v", sweep.lambda_v)):  # loguniform (config checks the mode)
        if len(bounds) != 2 or not 0 < bounds[0] < bounds[1]:
            raise ConfigError(f"sweep.{name}: loguniform needs [low, high] with 0 < low < high, got {list(bounds)}")
    return {"lambda_f": tune.loguniform(*sweep.lambda_f), "lambda_v": tune.loguniform(*sweep.lambda_v)}


def trial_resources(config: Config) -> dict[str, float]:
    """What each trial reserves: ``sweep.cpus_per_trial`` CPUs, and one GPU when ``train.use_gpu``."""
    return {"cpu": config.sweep.cpus_per_trial, **({"gpu": 1} if config.train.use_gpu else {})}


def sweep(config: Config) -> dict[str, Any]:
    """Run the sweep (Ray must be initialised); returns the results table, best weights and parent run id."""
    check_training_splits(config.data)
    from ray import tune

    config = with_tracking_uri(config)
    space = search_space(config)
    parent_run_id = start_run(config, f"{config.train.name}-sweep", tags={"groprompt.kind": "sweep"})
    concurrency = max(1, math.floor(cluster_cpus() / config.sweep.cpus_per_trial))
    storage = run_storage(config)
    base = to_dict(replace(config, **{"train.cpus_per_worker": config.sweep.cpus_per_trial}))
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(trial, base_tree=base, parent_run_id=parent_run_id), trial_resources(config)),
        param_space=space,
        tune_config=tune.TuneConfig(
            metric=METRIC, mode="max", num_samples=config.sweep.num_samples, max_concurrent_trials=concurrency, scheduler=asha(config)
        ),
        run_config=tune.RunConfig(name=f"{config.train.name}-sweep", storage_path=str(storage)),
    )
    with run_status(parent_run_id, config.runtime.tracking_uri):
        results = list(tuner.fit())
        _close_child_runs(results, parent_run_id, config)
        rows = rank_trials([result_row(result) for result in results])
        best = rows[0]
        best_config = replace(config, **{"loss.lambda_f": best["lambda_f"], "loss.lambda_v": best["lambda_v"]})
        _log_summary(parent_run_id, rows, best_config, config)
    return {"rows": rows, "best": best, "parent_run_id": parent_run_id, "best_config": best_config}


def asha(config: Config) -> Any:
    """The early-stopping scheduler: ASHA over ``train.epochs`` (one result per epoch), ``sweep.grace_period`` and
    ``sweep.reduction_factor``."""
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(max_t=config.train.epochs, grace_period=config.sweep.grace_period, reduction_factor=config.sweep.reduction_factor)


def result_row(result: Any) -> dict[str, Any]:
    """A finished trial as a results-table row (with its metric after every epoch); a failed trial fails the sweep."""
    if result.error is not None:
        raise RuntimeError(f"sweep trial failed: {result.error}")
    history = result.metrics_dataframe.sort_values("epoch")
    return {
        "lambda_f": result.config["lambda_f"],
        "lambda_v": result.config["lambda_v"],
        "epochs": int(result.metrics["epoch"]) + 1,
        "history": [float(value) for value in history[METRIC]],
    }


def rank_trials(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Trials best first by each one's own last result, as Ray Tune's ``get_best_result(scope="last")`` ranks them:
    ASHA stops a trial because its result at a rung fell behind the others', so a survivor's last result is its
    final model, and a stopped trial's last result is where it was stopped. Never compared at a common early epoch.
    Each row keeps its ``epochs``, its last ``val_box_iou`` and its ``best_val_box_iou`` over the epochs."""
    ranked = [
        {
            **{key: value for key, value in row.items() if key != "history"},
            METRIC: row["history"][-1],
            "best_" + METRIC: max(row["history"]),
        }
        for row in rows
    ]
    return sorted(ranked, key=lambda row: -row[METRIC])


def best_yaml(best: Config, row: dict[str, Any], epochs: int) -> str:
    """``best.yaml``: the best trial's configuration, headed by which trial it is and how it was chosen."""
    header = (
        f"# The sweep's best trial: lambda_f={row['lambda_f']} lambda_v={row['lambda_v']}, chosen by its own last result\n"
        f"# ({METRIC} {row[METRIC]:.6g} after epoch {row['epochs']} of {epochs}; Ray Tune's scope='last'), never at a common early epoch.\n"
    )
    return header + yaml.safe_dump(to_dict(best))


def _close_child_runs(results: list[Any], parent_run_id: str, config: Config) -> None:
    """Give every trial's child run its loss curve and terminal status: FINISHED when it trained every epoch,
    KILLED when ASHA stopped it early, FAILED when it raised."""
    from mlflow import MlflowClient

    client = MlflowClient(config.runtime.tracking_uri)
    children = client.search_runs(
        [client.get_run(parent_run_id).info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'"
    )
    by_trial = {run.data.tags.get(TRIAL_TAG): run.info.run_id for run in children}
    for result in results:
        run_id = by_trial.get((result.metrics or {}).get("trial_id"))
        if run_id is None:  # the trial failed before it could create its run
            continue
        if result.error is not None:
            client.set_terminated(run_id, "FAILED")
            continue
        log_loss_curve(run_id, epoch_history(run_id, config.runtime.tracking_uri), config.runtime.tracking_uri)
        finished = int(result.metrics["epoch"]) + 1 >= config.train.epochs
        client.set_terminated(run_id, "FINISHED" if finished else "KILLED")


def _log_summary(parent_run_id: str, rows: list[dict[str, Any]], best: Config, config: Config) -> None:
    """Results table, heatmap of val_box_iou over (lambda_f, lambda_v), and the best configuration."""
    import pandas as pd
    from mlflow import MlflowClient

    client = MlflowClient(config.runtime.tracking_uri)
    best_text = best_yaml(best, rows[0], config.train.epochs)
    write_text_atomic(run_storage(config) / f"{config.train.name}-sweep" / "best.yaml", best_text)
    with tempfile.TemporaryDirectory() as folder:
        pd.DataFrame(rows).to_csv(Path(folder) / "sweep_results.csv", index=False)
        (Path(folder) / "sweep_results.md").write_text(markdown_table(rows))
        (Path(folder) / "best.yaml").write_text(best_text)
        title = f"{METRIC}, each trial's last epoch (ASHA stops some early)"
        sweep_heatmap(rows, METRIC, Path(folder) / "sweep_heatmap.png", title)
        client.log_artifacts(parent_run_id, folder)
    log_params(parent_run_id, {"best.lambda_f": rows[0]["lambda_f"], "best.lambda_v": rows[0]["lambda_v"]}, config.runtime.tracking_uri)
    client.log_metric(parent_run_id, "best_" + METRIC, rows[0][METRIC])


def format_rows(outcome: dict[str, Any]) -> list[str]:
    """One line per trial, then the best weights and the parent run."""
    lines = ["  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()) for row in outcome["rows"]]
    best = outcome["best"]
    lines.append(f"best: lambda_f={best['lambda_f']} lambda_v={best['lambda_v']} (MLflow parent run {outcome['parent_run_id']})")
    return lines
