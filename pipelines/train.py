"""Train the GroPrompt proposal generator with Ray Train (DDP: gloo on CPU, NCCL on GPU), tracked in MLflow.

    ray job submit --working-dir . -- python pipelines/train.py --config conf/tiny.yaml train.epochs=6
    python pipelines/train.py --config conf/tiny.yaml            # starts a local Ray when none is running

Workers read frame-shard metadata and cached SAM embeddings only. A run restarted with the same
``train.storage_path`` and ``train.name`` resumes from its last checkpoint.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import torch

from groprompt.config import Config, from_dict, load_config, with_absolute_paths, to_dict
from groprompt.data.records import DataError
from groprompt.tracking import epoch_history, log_loss_curve, log_trained_model, run_status, start_run, with_tracking_uri
from groprompt.training import CHECKPOINT_FILE, load_checkpoint, run_training


class TrainSession:
    """A Ray Train worker as seen by ``run_training``."""

    def __init__(self) -> None:
        import ray.train

        context = ray.train.get_context()
        self.rank, self.world = context.get_world_rank(), context.get_world_size()

    def latest_checkpoint(self) -> dict[str, Any] | None:
        import ray.train

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            return None
        with checkpoint.as_directory() as folder:
            return load_checkpoint(folder)

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        from ray.train.torch import prepare_model

        return prepare_model(model, parallel_strategy_kwargs={"find_unused_parameters": True})

    def report(self, metrics: dict[str, float], checkpoint_folder: str | None) -> None:
        import ray.train

        checkpoint = ray.train.Checkpoint.from_directory(checkpoint_folder) if checkpoint_folder else None
        ray.train.report(metrics, checkpoint=checkpoint)


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """The work of one Ray Train worker."""
    run_training(from_dict(loop_config["config"]), TrainSession(), loop_config["run_id"], Path(loop_config["failure_marker"]))


def train(config: Config, run_name: str | None = None, parent_run_id: str | None = None) -> dict[str, Any]:
    """Run the distributed training (Ray must be initialised); returns the final metrics and the MLflow run id."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    config = with_tracking_uri(config)
    storage = Path(config.train.storage_path).resolve()
    run_id = start_run(config, run_name or config.train.name, parent_run_id=parent_run_id)
    with run_status(run_id, config.runtime.tracking_uri):
        trainer = TorchTrainer(
            train_loop_per_worker,
            train_loop_config={
                "config": to_dict(config),
                "run_id": run_id,
                "failure_marker": str(storage / config.train.name / "injected-failure"),
            },
            torch_config=TorchConfig(backend="nccl" if config.train.use_gpu else "gloo"),
            scaling_config=ScalingConfig(
                num_workers=config.train.num_workers,
                use_gpu=config.train.use_gpu,
                resources_per_worker={"CPU": config.train.cpus_per_worker},
            ),
            run_config=RunConfig(
                name=config.train.name,
                storage_path=str(storage),
                failure_config=FailureConfig(max_failures=config.train.max_failures),
                checkpoint_config=CheckpointConfig(num_to_keep=2),
            ),
        )
        result = trainer.fit()
        history = epoch_history(run_id, config.runtime.tracking_uri)
        with result.checkpoint.as_directory() as folder:
            log_trained_model(run_id, Path(folder) / CHECKPOINT_FILE, config, config.runtime.tracking_uri)
        log_loss_curve(run_id, history, config.runtime.tracking_uri)
    return {"run_id": run_id, "metrics": history[-1], "history": history, "checkpoint": result.checkpoint.path}


def parse_args(argv: list[str] | None) -> tuple[Config, str | None]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", action="append", default=[], help="YAML file(s), merged in order")
    parser.add_argument("--address", default=None, help="Ray cluster (default: $RAY_ADDRESS, else a local Ray)")
    parser.add_argument("overrides", nargs="*", help="key.sub=value")
    args = parser.parse_args(argv)
    return with_absolute_paths(load_config(args.config, args.overrides)), args.address


def main(argv: list[str] | None = None) -> int:
    from groprompt.cluster import init_ray

    config, address = parse_args(argv)
    init_ray(address or config.runtime.ray_address)
    try:
        outcome = train(config)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    metrics = outcome["metrics"]
    print(f"finished: run {outcome['run_id']}, epoch {int(metrics['epoch'])}, loss_total {metrics['loss_total']:.4f}, "
          f"val_box_iou {metrics['val_box_iou']:.4f}; checkpoint {outcome['checkpoint']}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS", "0")
    sys.exit(main())
