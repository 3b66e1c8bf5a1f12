"""The train stage: the proposal generator trained with Ray Train (DDP: gloo on CPU, NCCL on GPU), tracked in MLflow.

Workers read frame-shard metadata and cached SAM embeddings only. A run restarted with the same
``train.storage_path`` and ``train.name`` (after Ctrl-C, a killed driver, a lost worker or node) resumes from its
latest checkpoint that Ray Train registered, and continues the same MLflow run; checkpoint folders Ray Train never
registered (written while the run was stopped) are removed first.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from groprompt.checkpoints import CHECKPOINT_FILE, log_trained_model
from groprompt.config import Config, from_dict, to_dict
from groprompt.data.formats import check_training_splits
from groprompt.errors import CheckpointError, ConfigError, DataError, UserError
from groprompt.files import Location, location, remove_tree, write_json_atomic
from groprompt.models.sam import require_weights
from groprompt.stages.sessions import RaySession, registered_checkpoints
from groprompt.tracking import continue_or_start_run, epoch_history, log_loss_curve, run_status, with_tracking_uri
from groprompt.training.loop import run_training

MLFLOW_RUN_FILE = "mlflow-run-id"  # in <storage>/<name>/: the run a restarted training continues
USER_ERROR_FILE = "user-error.json"  # in <storage>/<name>/: a worker's user error, raised again by the driver
ERRORS = {cls.__name__: cls for cls in (ConfigError, DataError, CheckpointError)}


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """The work of one Ray Train worker.

    A user error (bad configuration, data or checkpoint) ends the worker cleanly instead of raising, so that Ray
    Train does not retry what no retry can fix; the driver raises it again from the file the worker leaves.
    """
    config = from_dict(loop_config["config"])
    try:
        run_training(config, RaySession(distributed=True, run_folder=loop_config["run_folder"]), loop_config["run_id"])
    except UserError as error:
        write_json_atomic(location(loop_config["user_error"]), {"type": type(error).__name__, "message": str(error)})


def _raise_worker_error(path: Location) -> None:
    """Raise the user error a worker recorded in ``path``, if any."""
    if path.is_file():
        recorded = json.loads(path.read_text())
        raise ERRORS.get(recorded["type"], DataError)(recorded["message"])


def remove_unregistered_checkpoints(run_folder: Location) -> list[Location]:
    """Delete the checkpoint folders of ``run_folder`` that Ray Train never registered; returns them.

    Ray Train registers a checkpoint (and rewrites its snapshot) only once the folder is complete, and resumes from
    registered ones only: a folder it never registered was being written when the run stopped. With an unreadable
    snapshot nothing is removed.
    """
    registered = registered_checkpoints(run_folder)
    if registered is None:
        return []
    stale = sorted((folder for folder in run_folder.glob("checkpoint_*") if folder.is_dir() and folder.name not in registered), key=str)
    for folder in stale:
        remove_tree(folder)
        print(f"removed {folder}: a checkpoint Ray Train never registered (the run stopped while it was written)", flush=True)
    return stale


def run_storage(config: Config) -> Location:
    """Where Ray Train and Ray Tune keep runs (``train.storage_path``): a bucket URI, or an absolute local path."""
    storage = location(config.train.storage_path)
    return storage.resolve() if isinstance(storage, Path) else storage


def train(config: Config, run_name: str | None = None, parent_run_id: str | None = None) -> dict[str, Any]:
    """Run the distributed training (Ray must be initialised); returns the final metrics and the MLflow run id."""
    check_training_splits(config.data)
    require_weights(config.model.sam, config.model.sam_checkpoint, config.model.allow_random_weights)
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    config = with_tracking_uri(config)
    uri = str(config.runtime.tracking_uri)
    storage = run_storage(config)
    user_error = storage / config.train.name / USER_ERROR_FILE
    user_error.unlink(missing_ok=True)
    remove_unregistered_checkpoints(storage / config.train.name)
    run_record = storage / config.train.name / MLFLOW_RUN_FILE
    run_id = continue_or_start_run(config, run_name or config.train.name, run_record, parent_run_id=parent_run_id)
    with run_status(run_id, uri):
        trainer = TorchTrainer(
            train_loop_per_worker,
            train_loop_config={
                "config": to_dict(config),
                "run_id": run_id,
                "user_error": str(user_error),
                "run_folder": str(storage / config.train.name),
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
        try:
            result = trainer.fit()
        except SystemExit as stop:  # Ray Train's Ctrl-C handler aborts the run, then exits
            raise KeyboardInterrupt(
                f"training {config.train.name!r} stopped; run the same command again to resume from its latest checkpoint "
                f"in {storage / config.train.name}"
            ) from stop
        _raise_worker_error(user_error)
        history = epoch_history(run_id, uri)
        with result.checkpoint.as_directory() as folder:
            log_trained_model(run_id, Path(folder) / CHECKPOINT_FILE, config, uri)
        log_loss_curve(run_id, history, uri)
    return {"run_id": run_id, "metrics": history[-1], "history": history, "checkpoint": result.checkpoint.path}


def format_outcome(outcome: dict[str, Any]) -> str:
    """One line: the run, its last epoch's loss and validation box IoU, and the checkpoint."""
    metrics = outcome["metrics"]
    return (
        f"finished: run {outcome['run_id']}, epoch {int(metrics['epoch'])}, loss_total {metrics['loss_total']:.4f}, "
        f"val_box_iou {metrics['val_box_iou']:.4f}; checkpoint {outcome['checkpoint']}"
    )
