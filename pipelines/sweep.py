"""Sweep the contrastive loss weights lambda_f and lambda_v with Ray Tune (ASHA on val_box_iou), in MLflow.

    python pipelines/sweep.py --config conf/tiny.yaml --config conf/sweep/grid.yaml

Each trial trains on one worker (trials run side by side, as many as the cluster's CPUs allow) and logs a
child run under one parent run; the parent gets a results table, a heatmap, and the best configuration.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from groprompt.cluster import cluster_cpus, init_ray
from groprompt.config import Config, from_dict, load_config, with_absolute_paths, replace, to_dict
from groprompt.data.records import DataError
from groprompt.outputs import markdown_table
from groprompt.tracking import log_params, resolve_tracking_uri, run_status, start_run, with_tracking_uri
from groprompt.training import load_checkpoint, run_training

METRIC = "val_box_iou"


class TuneSession:
    """A Ray Tune trial as seen by ``run_training`` (one process, no DDP)."""

    rank, world = 0, 1

    def latest_checkpoint(self) -> dict[str, Any] | None:
        import ray.tune

        checkpoint = ray.tune.get_checkpoint()
        if checkpoint is None:
            return None
        with checkpoint.as_directory() as folder:
            return load_checkpoint(folder)

    def prepare(self, model: Any) -> Any:
        return model

    def report(self, metrics: dict[str, float], checkpoint_folder: str | None) -> None:
        import ray.tune

        checkpoint = ray.tune.Checkpoint.from_directory(checkpoint_folder) if checkpoint_folder else None
        ray.tune.report(metrics, checkpoint=checkpoint)


def trial(params: dict[str, float], base_tree: dict[str, Any], parent_run_id: str) -> None:
    """One trial: the base configuration with this trial's weights, as a child run of the sweep."""
    base = from_dict(base_tree)
    config = replace(base, **{"loss.lambda_f": params["lambda_f"], "loss.lambda_v": params["lambda_v"], "train.num_workers": 1})
    run_name = f"lambda_f={params['lambda_f']:.3g} lambda_v={params['lambda_v']:.3g}"
    run_id = start_run(config, run_name, parent_run_id=parent_run_id)
    with run_status(run_id, config.runtime.tracking_uri):
        run_training(config, TuneSession(), run_id)


def search_space(config: Config) -> dict[str, Any]:
    """The Tune search space declared by ``config.sweep``."""
    from ray import tune

    sweep = config.sweep
    if sweep.mode == "grid":
        return {"lambda_f": tune.grid_search(list(sweep.lambda_f)), "lambda_v": tune.grid_search(list(sweep.lambda_v))}
    if sweep.mode == "loguniform":
        for name, bounds in (("lambda_f", sweep.lambda_f), ("lambda_v", sweep.lambda_v)):
            if len(bounds) != 2 or not 0 < bounds[0] < bounds[1]:
                raise ValueError(f"sweep.{name}: loguniform needs [low, high] with 0 < low < high, got {list(bounds)}")
        return {"lambda_f": tune.loguniform(*sweep.lambda_f), "lambda_v": tune.loguniform(*sweep.lambda_v)}
    raise ValueError(f"sweep.mode: expected grid or loguniform, got {sweep.mode!r}")


def sweep(config: Config) -> dict[str, Any]:
    """Run the sweep (Ray must be initialised); returns the results table, best weights and parent run id."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    config = with_tracking_uri(config)
    parent_run_id = start_run(config, f"{config.train.name}-sweep", tags={"groprompt.kind": "sweep"})
    concurrency = max(1, math.floor(cluster_cpus() / config.sweep.cpus_per_trial))
    storage = Path(config.train.storage_path).resolve()
    tuner = tune.Tuner(
        tune.with_resources(
            tune.with_parameters(trial, base_tree=to_dict(replace(config, **{"train.cpus_per_worker": config.sweep.cpus_per_trial})), parent_run_id=parent_run_id),
            {"cpu": config.sweep.cpus_per_trial},
        ),
        param_space=search_space(config),
        tune_config=tune.TuneConfig(
            metric=METRIC,
            mode="max",
            num_samples=config.sweep.num_samples,
            max_concurrent_trials=concurrency,
            scheduler=ASHAScheduler(max_t=config.train.epochs, grace_period=config.sweep.grace_period, reduction_factor=config.sweep.reduction_factor),
            search_alg=None,
        ),
        run_config=tune.RunConfig(name=f"{config.train.name}-sweep", storage_path=str(storage)),
    )
    with run_status(parent_run_id, config.runtime.tracking_uri):
        grid = tuner.fit()
        rows = []
        for result in grid:
            if result.error is not None:
                raise RuntimeError(f"sweep trial failed: {result.error}")
            rows.append({
                "lambda_f": result.config["lambda_f"],
                "lambda_v": result.config["lambda_v"],
                "epochs": int(result.metrics["epoch"]) + 1,
                METRIC: float(result.metrics[METRIC]),
                "best_" + METRIC: float(result.metrics_dataframe[METRIC].max()),
            })
        rows.sort(key=lambda row: -row[METRIC])
        best = rows[0]
        best_config = replace(config, **{"loss.lambda_f": best["lambda_f"], "loss.lambda_v": best["lambda_v"]})
        _log_summary(parent_run_id, rows, best_config, config)
    return {"rows": rows, "best": best, "parent_run_id": parent_run_id, "best_config": best_config}


def _log_summary(parent_run_id: str, rows: list[dict[str, Any]], best: Config, config: Config) -> None:
    """Results table, heatmap of val_box_iou over (lambda_f, lambda_v), and the best configuration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    from mlflow import MlflowClient

    client = MlflowClient(resolve_tracking_uri(config.runtime.tracking_uri))
    table = pd.DataFrame(rows)
    out = Path(config.train.storage_path) / f"{config.train.name}-sweep"
    out.mkdir(parents=True, exist_ok=True)
    (out / "best.yaml").write_text(yaml.safe_dump(to_dict(best)))
    with tempfile.TemporaryDirectory() as folder:
        table.to_csv(Path(folder) / "sweep_results.csv", index=False)
        (Path(folder) / "sweep_results.md").write_text(markdown_table(rows))
        (Path(folder) / "best.yaml").write_text(yaml.safe_dump(to_dict(best)))
        grid = table.pivot_table(index="lambda_f", columns="lambda_v", values=METRIC, aggfunc="max")
        figure, axis = plt.subplots(figsize=(5, 4))
        image = axis.imshow(grid.values, cmap="viridis", origin="lower")
        axis.set_xticks(range(len(grid.columns)), [f"{v:.3g}" for v in grid.columns])
        axis.set_yticks(range(len(grid.index)), [f"{v:.3g}" for v in grid.index])
        axis.set(xlabel="lambda_v", ylabel="lambda_f", title=f"{METRIC} (last epoch)")
        for (i, j), value in pd.DataFrame(grid.values).stack().items():
            axis.text(j, i, f"{value:.3f}", ha="center", va="center", color="white", fontsize=8)
        figure.colorbar(image)
        figure.tight_layout()
        figure.savefig(Path(folder) / "sweep_heatmap.png", dpi=100)
        plt.close(figure)
        client.log_artifacts(parent_run_id, folder)
    log_params(parent_run_id, {"best.lambda_f": rows[0]["lambda_f"], "best.lambda_v": rows[0]["lambda_v"]}, config.runtime.tracking_uri)
    client.log_metric(parent_run_id, "best_" + METRIC, rows[0][METRIC])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", action="append", default=[], help="YAML file(s), merged in order")
    parser.add_argument("--address", default=None)
    parser.add_argument("overrides", nargs="*", help="key.sub=value")
    args = parser.parse_args(argv)
    config = with_absolute_paths(load_config(args.config, args.overrides))
    init_ray(args.address or config.runtime.ray_address)
    try:
        outcome = sweep(config)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for row in outcome["rows"]:
        print("  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
    print(f"best: lambda_f={outcome['best']['lambda_f']} lambda_v={outcome['best']['lambda_v']} (MLflow parent run {outcome['parent_run_id']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
