"""The models one inference worker holds: frozen SAM and text encoder, the trained proposal generator, a segmentor."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from groprompt.checkpoints import TrainedWeights, build_trained_model
from groprompt.config import ModelConfig

if TYPE_CHECKING:
    from groprompt.models.frozen import FrozenEncoders
    from groprompt.models.groprompt import GroPrompt
    from groprompt.models.segmentors import Segmentor, VideoSegmentor


@dataclass
class Predictor:
    """Everything one worker needs to segment videos, loaded once."""

    frozen: FrozenEncoders
    model: GroPrompt
    segmentor: Segmentor | VideoSegmentor
    segmentor_name: str
    model_id: str  # names the weights in fingerprints: checkpoint sha256, mlflow:<run>, random:<seed>


def build_predictor(model_config: ModelConfig, weights: TrainedWeights, segmentor: str = "sam", seed: int = 0) -> Predictor:
    """Load the frozen encoders, the model with ``weights`` (``random_weights`` gives an UNTRAINED model drawn
    from ``seed``: smoke tests only) and the named segmentor."""
    from groprompt.models.segmentors import build_segmentor

    frozen, model = build_trained_model(model_config, weights, seed=seed)
    return Predictor(
        frozen=frozen,
        model=model,
        segmentor=build_segmentor(segmentor, sam=frozen.sam, config=model_config),
        segmentor_name=segmentor,
        model_id=weights.model_id,
    )
