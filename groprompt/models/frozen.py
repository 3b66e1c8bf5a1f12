"""The frozen encoders: SAM (image encoder, prompt encoder, mask decoder) and the text encoder."""

from __future__ import annotations

from dataclasses import dataclass

from groprompt.config import ModelConfig
from groprompt.models.sam import FrozenSam, require_weights
from groprompt.models.text import FrozenTextEncoder


@dataclass
class FrozenEncoders:
    """The frozen SAM (image encoder, prompt encoder, mask decoder) and text encoder."""

    sam: FrozenSam
    text: FrozenTextEncoder


def build_frozen(config: ModelConfig) -> FrozenEncoders:
    """Load the frozen encoders named by the configuration."""
    require_weights(config.sam, config.sam_checkpoint, config.allow_random_weights)
    sam = FrozenSam.from_name(config.sam, checkpoint=config.sam_checkpoint, seed=config.sam_seed)
    return FrozenEncoders(sam=sam, text=FrozenTextEncoder(config.text_encoder))
