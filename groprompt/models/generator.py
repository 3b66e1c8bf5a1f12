"""The proposal generator's interface, which both kinds implement, and the registry that builds the configured one.

A generator turns B clips (cached SAM embeddings and, for one that reads them, pixels) and B sentences into one
``FrameOutput`` per frame and a unit sentence feature per clip (ModalCon's z); ``stream`` runs it online over a
video, one frame at a time. The training loss, validation, evaluation and inference use nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch

from groprompt.config import LossConfig, ModelConfig
from groprompt.models.frozen import FrozenEncoders
from groprompt.models.proposal import FrameOutput


class FrameStream(Protocol):
    """One video's sentences through a generator, frame after frame (frame t sees frames <= t only)."""

    def step(self, embedding: torch.Tensor, pixels: torch.Tensor | None) -> FrameOutput:
        """The next frame's output, given its SAM embedding (C, g, g) and, if the generator reads them, its pixels
        (3, S, S) uint8 (``groprompt.data.pixels.frame_pixels``)."""
        ...


class Generator(Protocol):
    """A trainable proposal generator (an ``nn.Module``)."""

    @property
    def pixel_size(self) -> int | None:
        """Side of the square frames it reads; None when it reads no pixels (cached SAM embeddings only)."""
        ...

    @property
    def sentence_dim(self) -> int:
        """Width of its sentence features."""
        ...

    def loss_config(self, config: LossConfig) -> LossConfig:
        """The loss weights that apply to it (a pretrained detector keeps its classification untrained)."""
        ...

    def run(
        self,
        frozen: FrozenEncoders,
        embeddings: torch.Tensor,
        pixels: torch.Tensor | None,
        sentences: list[str],
        previous: torch.Tensor | None = None,
    ) -> tuple[list[FrameOutput], torch.Tensor]:
        """Clips: embeddings (P, T, C, g, g) and pixels (P, T, 3, S, S) uint8 or None; B sentences -> outputs per frame,
        (B, D). ``previous`` (P, C, g, g): the embedding of the frame before each clip, for a generator that reads motion
        (None: the clips start their videos).

        P divides B and sentence b reads clip b mod P: clips that several sentences share (a clip's sentence and its
        negative, a video's expressions) are given once."""
        ...

    def stream(self, frozen: FrozenEncoders, sentences: list[str]) -> FrameStream: ...


def _sam_decoder(config: ModelConfig, frozen: FrozenEncoders) -> torch.nn.Module:
    from groprompt.models.proposal import ProposalGenerator

    return ProposalGenerator(config, image_dim=frozen.sam.embed_dim, grid=frozen.sam.embed_grid, text_dim=frozen.text.dim)


def _grounding_dino(config: ModelConfig, frozen: FrozenEncoders) -> torch.nn.Module:
    from groprompt.models.grounding_dino import GroundingDinoGenerator

    return GroundingDinoGenerator.from_config(config)


GENERATORS: dict[str, Callable[[ModelConfig, FrozenEncoders], torch.nn.Module]] = {
    "sam-decoder": _sam_decoder,
    "grounding-dino": _grounding_dino,
}


def build_generator(config: ModelConfig, frozen: FrozenEncoders) -> torch.nn.Module:
    """The configured generator (``model.proposal``), sized to fit the frozen encoders."""
    return GENERATORS[config.proposal](config, frozen)
