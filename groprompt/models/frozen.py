"""The frozen encoders: SAM (image encoder, prompt encoder, mask decoder) and the text encoder."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch

from groprompt.config import ModelConfig
from groprompt.models.encoder_options import EncoderOptions
from groprompt.models.sam import FrozenSam, require_weights
from groprompt.models.text import FrozenTextEncoder


class FrozenEncoders:
    """The frozen SAM (image encoder, prompt encoder, mask decoder) and text encoder.

    The text encoder may be given as a loader: it is then loaded on first use, on SAM's device, so that a generator
    with its own text encoder (``grounding-dino``) never loads it."""

    def __init__(self, sam: FrozenSam, text: FrozenTextEncoder | Callable[[], FrozenTextEncoder]) -> None:
        self.sam = sam
        self._text = text

    @property
    def text(self) -> FrozenTextEncoder:
        """The text encoder, loaded now if it was given as a loader."""
        if not isinstance(self._text, FrozenTextEncoder):
            self._text = self._text().to(self.sam.device)
        return self._text

    def to(self, device: torch.device | str) -> FrozenEncoders:
        """Move the encoders (a text encoder not yet loaded: when it loads) to ``device``."""
        self.sam.to(device)
        if isinstance(self._text, FrozenTextEncoder):
            self._text.to(device)
        return self


def frozen_sam(config: ModelConfig) -> FrozenSam:
    """The configured SAM: its checkpoint (or, where allowed, random weights from its seed) and encoder options."""
    require_weights(config.sam, config.sam_checkpoint, config.allow_random_weights)
    options = EncoderOptions.from_config(config)
    return FrozenSam.from_name(config.sam, checkpoint=config.sam_checkpoint, seed=config.sam_seed, options=options)


def build_frozen(config: ModelConfig) -> FrozenEncoders:
    """The frozen encoders named by the configuration; the text encoder loads when a generator first uses it."""
    return FrozenEncoders(sam=frozen_sam(config), text=partial(FrozenTextEncoder, config.text_encoder, dtype=config.encoder_dtype))
