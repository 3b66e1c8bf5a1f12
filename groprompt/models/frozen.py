"""The frozen encoders: SAM (image encoder, prompt encoder, mask decoder) and the text encoder."""

from __future__ import annotations

from dataclasses import dataclass

from groprompt.config import ModelConfig
from groprompt.models.encoder_options import EncoderOptions
from groprompt.models.sam import FrozenSam, require_weights
from groprompt.models.text import FrozenTextEncoder


@dataclass
class FrozenEncoders:
    """The frozen SAM (image encoder, prompt encoder, mask decoder) and text encoder."""

    sam: FrozenSam
    text: FrozenTextEncoder


def frozen_sam(config: ModelConfig) -> FrozenSam:
    """The configured SAM: its checkpoint (or, where allowed, random weights from its seed) and encoder options."""
    require_weights(config.sam, config.sam_checkpoint, config.allow_random_weights)
    options = EncoderOptions.from_config(config)
    return FrozenSam.from_name(config.sam, checkpoint=config.sam_checkpoint, seed=config.sam_seed, options=options)


def build_frozen(config: ModelConfig) -> FrozenEncoders:
    """Load the frozen encoders named by the configuration."""
    return FrozenEncoders(sam=frozen_sam(config), text=FrozenTextEncoder(config.text_encoder, dtype=config.encoder_dtype))
