"""The one place a trained GroPrompt model is saved and loaded.

A training checkpoint is a folder holding ``checkpoint.pt``: the payload of ``training_payload`` (model,
optimiser, scheduler, epoch, RNG). A finished training run also logs the model to MLflow (``model/``: the
state dict and the configuration that built it). ``load_trained`` reads any of them: ``mlflow:<run_id>``, a
checkpoint folder, a payload file or a bare state-dict file; ``build_trained_model`` turns the weights into
an evaluation-mode model beside its frozen encoders.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import yaml

from groprompt.config import SEGMENTOR_KEYS, Config, ModelConfig, load_config, replace, to_dict
from groprompt.errors import CheckpointError
from groprompt.files import Location, atomic_path, location, sha256_file
from groprompt.torch_files import read_file

if TYPE_CHECKING:
    from groprompt.models.frozen import FrozenEncoders
    from groprompt.models.groprompt import GroPrompt

CHECKPOINT_FILE = "checkpoint.pt"  # inside a training checkpoint folder
LOGGED_MODEL = "model"  # MLflow artifact folder of a trained model
MODEL_STATE = "model_state.pt"
MODEL_CONFIG = "config.yaml"
MLFLOW_PREFIX = "mlflow:"


@dataclass(frozen=True)
class TrainedWeights:
    """A trained state dict, the model configuration that built it (when the source records one), and an id
    that names the weights in output fingerprints (``mlflow:<run>``, the file's sha256, or ``random:<seed>``)."""

    state: dict[str, torch.Tensor] | None
    model_config: ModelConfig | None
    model_id: str


def training_payload(model: torch.nn.Module, optimizer: Any, scheduler: Any, epoch: int) -> dict[str, Any]:
    """Everything needed to resume after ``epoch``: model, optimiser, scheduler, epoch, RNG state."""
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "epoch": epoch,
        "torch_rng": torch.get_rng_state(),
    }


def save_payload(folder: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` as ``<folder>/checkpoint.pt`` (atomically); returns the file."""
    path = Path(folder) / CHECKPOINT_FILE
    with atomic_path(path) as temporary:
        torch.save(payload, temporary)
    return path


def read_payload(folder: str | Path | Location) -> dict[str, Any]:
    """The payload that ``save_payload`` wrote in ``folder`` (local or in object storage)."""
    path = location(folder) / CHECKPOINT_FILE
    payload = read_file(path)
    if not isinstance(payload, dict) or "model" not in payload:
        raise CheckpointError(f"{path}: not a training checkpoint (no 'model' entry)")
    return payload


def strip_ddp_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict without DistributedDataParallel's ``module.`` key prefix."""
    return {key.removeprefix("module."): value for key, value in state.items()}


def log_trained_model(run_id: str, checkpoint: Path, config: Config, tracking_uri: str) -> None:
    """Log the final checkpoint file and the model (weights + configuration) so ``load_trained`` reads it back."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    client.log_artifact(run_id, str(checkpoint), artifact_path="checkpoint")
    state = strip_ddp_prefix(read_file(checkpoint)["model"])
    with tempfile.TemporaryDirectory() as folder:
        torch.save(state, Path(folder) / MODEL_STATE)
        (Path(folder) / MODEL_CONFIG).write_text(yaml.safe_dump(to_dict(config)))
        client.log_artifacts(run_id, folder, artifact_path=LOGGED_MODEL)


def load_trained(source: str | Path, tracking_uri: str) -> TrainedWeights:
    """The trained weights named by ``source``: ``mlflow:<run_id>`` (from the store at ``tracking_uri``), a
    checkpoint folder (``checkpoint.pt`` inside), or a file holding a training payload or a bare state dict; a
    folder or file may be a local path or a URI of object storage (``s3://bucket/run/checkpoint_000001``)."""
    text = str(source)
    if text.startswith(MLFLOW_PREFIX):
        return _load_logged(text.removeprefix(MLFLOW_PREFIX), tracking_uri)
    path = location(source)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    content = read_file(path)
    state = content["model"] if isinstance(content, dict) and "model" in content else content
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise CheckpointError(f"{path}: expected a state dict or a training checkpoint with a 'model' entry")
    return TrainedWeights(strip_ddp_prefix(state), None, sha256_file(path))


def _load_logged(run_id: str, tracking_uri: str) -> TrainedWeights:
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        folder = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=LOGGED_MODEL, tracking_uri=tracking_uri))
    except (MlflowException, OSError) as error:
        reason = str(error).splitlines()[0]
        raise CheckpointError(f"{MLFLOW_PREFIX}{run_id}: no trained model logged in {tracking_uri} ({reason})") from error
    state = read_file(folder / MODEL_STATE)
    config = load_config([folder / MODEL_CONFIG])
    return TrainedWeights(strip_ddp_prefix(state), config.model, f"{MLFLOW_PREFIX}{run_id}")


def with_model_of(config: Config, weights: TrainedWeights) -> Config:
    """``config`` with the model section that built ``weights`` (when the source records one); the segmentor keys
    (``SEGMENTOR_KEYS``) stay ``config``'s own, as they do not build the trained model."""
    if weights.model_config is None:
        return config
    segmentor = {key: getattr(config.model, key) for key in SEGMENTOR_KEYS}
    return replace(config, model={**to_dict(weights.model_config), **segmentor})


def random_weights(seed: int) -> TrainedWeights:
    """No trained weights: an UNTRAINED model from ``seed`` (smoke tests and speed benchmarks only)."""
    return TrainedWeights(None, None, f"random:{seed}")


def build_trained_model(
    model_config: ModelConfig, weights: TrainedWeights, frozen: FrozenEncoders | None = None, seed: int = 0
) -> tuple[FrozenEncoders, GroPrompt]:
    """The frozen encoders (built unless given) and the model with ``weights`` loaded, in evaluation mode.

    Without a state (``random_weights``) the model keeps the random initialisation drawn from ``seed``.
    """
    from groprompt.models.frozen import build_frozen
    from groprompt.models.groprompt import build_model

    frozen = frozen or build_frozen(model_config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(model_config, frozen)
    if weights.state is not None:
        try:
            model.load_state_dict(weights.state, strict=True)
        except RuntimeError as error:
            first = str(error).splitlines()[0]
            raise CheckpointError(f"{weights.model_id}: weights do not fit the configured model ({first})") from error
    return frozen, model.eval().requires_grad_(False)
