"""Ray Train workers and Ray Tune trials, as the training loop (``groprompt.training.loop.Session``) sees them."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import torch

from groprompt.checkpoints import read_payload
from groprompt.errors import CheckpointError
from groprompt.files import Location, location

CHECKPOINT_SNAPSHOT = "checkpoint_manager_snapshot.json"  # in <storage>/<name>/: Ray Train's registered checkpoints


class RaySession:
    """One training process under Ray: a Ray Train worker (``distributed``: DDP across workers) or a Ray Tune trial.
    ``run_folder`` (``<train.storage_path>/<train.name>``) lets a resume fall back to an earlier registered checkpoint."""

    def __init__(self, distributed: bool, use_gpu: bool = False, run_folder: str | None = None) -> None:
        self.distributed = distributed
        self.use_gpu = use_gpu
        self.run_folder = run_folder
        self.api: ModuleType
        if distributed:
            import ray.train

            context = ray.train.get_context()
            self.api, self.rank, self.world = ray.train, context.get_world_rank(), context.get_world_size()
        else:
            import ray.tune

            self.api, self.rank, self.world = ray.tune, 0, 1

    @property
    def device(self) -> torch.device:
        """Where this process trains: Ray Train's device for a worker (its GPU when the run asked for GPUs), else a GPU
        when ``use_gpu`` and the trial sees one, else the CPU."""
        if self.distributed:
            from ray.train.torch import get_device

            return get_device()
        return torch.device("cuda" if self.use_gpu and torch.cuda.is_available() else "cpu")

    def latest_checkpoint(self) -> dict[str, Any] | None:
        """The payload of the run's latest reported checkpoint, if any; with ``run_folder``, read where Ray Train keeps
        it, and when it cannot be read (an upload cut short as the run stopped), the newest earlier registered one
        that can (every worker reads the same files, so all take the same one)."""
        checkpoint = self.api.get_checkpoint()
        if checkpoint is None:
            return None
        if self.run_folder is None:
            with checkpoint.as_directory() as folder:
                return read_payload(folder)
        return newest_readable_payload(location(self.run_folder), checkpoint.path.rstrip("/").rpartition("/")[2])

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        """DDP-wrap the model for distributed workers; a trial trains it as it is."""
        if not self.distributed:
            return model
        from ray.train.torch import prepare_model

        return prepare_model(model, parallel_strategy_kwargs={"find_unused_parameters": True})

    def report(self, metrics: dict[str, float], checkpoint_folder: str | None) -> None:
        """Report an epoch's metrics, with the checkpoint folder on rank 0."""
        checkpoint = self.api.Checkpoint.from_directory(checkpoint_folder) if checkpoint_folder else None
        self.api.report(metrics, checkpoint=checkpoint)


def registered_checkpoints(run_folder: Location) -> dict[str, dict[str, Any]] | None:
    """The checkpoints Ray Train registered for a run (its snapshot): folder name -> the metrics reported with it.

    Empty before the first registration; None when the snapshot cannot be read.
    """
    try:
        entries = json.loads((run_folder / CHECKPOINT_SNAPSHOT).read_text())["checkpoint_results"]
        return {entry["checkpoint_dir_name"]: entry["metrics"] for entry in entries}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def newest_readable_payload(run_folder: Location, latest: str) -> dict[str, Any]:
    """The payload of ``run_folder``'s checkpoint ``latest``, or, when it cannot be read, of the newest registered one
    before it that can (Ray names them by time), announced in one line; the error of ``latest`` when none can."""
    earlier = sorted((name for name in registered_checkpoints(run_folder) or {} if name < latest), reverse=True)
    first_error: CheckpointError | None = None
    for name in (latest, *earlier):
        try:
            payload = read_payload(run_folder / name)
        except CheckpointError as error:
            first_error = first_error or error
            continue
        if first_error is not None:
            print(f"{first_error}; resuming from the earlier checkpoint {run_folder / name}", flush=True)
        return payload
    assert first_error is not None
    raise first_error
