"""The GroPrompt model: trainable parts (proposal generator, ModalCon head) beside the frozen encoders."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from groprompt.config import LossConfig, ModelConfig
from groprompt.engine import ClipBatch, compute_losses
from groprompt.models.modalcon import ModalConHead
from groprompt.models.proposal import ProposalGenerator
from groprompt.models.sam import FrozenSam
from groprompt.models.text import FrozenTextEncoder


class GroPrompt(nn.Module):
    """Everything that trains: its state dict is the whole checkpoint."""

    def __init__(self, config: ModelConfig, image_dim: int, grid: int, text_dim: int) -> None:
        super().__init__()
        self.proposal = ProposalGenerator(config, image_dim=image_dim, grid=grid, text_dim=text_dim)
        self.modalcon = ModalConHead(image_dim, text_dim, num_heads=config.num_heads)

    def forward(self, frozen: FrozenEncoders, batch: ClipBatch, loss: LossConfig) -> dict[str, torch.Tensor]:
        """The loss terms of a batch: the whole training computation, so DDP sees every parameter it uses."""
        return compute_losses(self, frozen, batch, loss)


@dataclass
class FrozenEncoders:
    """The frozen SAM (image encoder, prompt encoder, mask decoder) and text encoder."""

    sam: FrozenSam
    text: FrozenTextEncoder


def build_frozen(config: ModelConfig) -> FrozenEncoders:
    """Load the frozen encoders named by the configuration."""
    sam = FrozenSam.from_name(config.sam, checkpoint=config.sam_checkpoint, seed=config.sam_seed)
    return FrozenEncoders(sam=sam, text=FrozenTextEncoder(config.text_encoder))


def build_model(config: ModelConfig, frozen: FrozenEncoders) -> GroPrompt:
    """The trainable model sized to fit the frozen encoders."""
    return GroPrompt(config, image_dim=frozen.sam.embed_dim, grid=frozen.sam.embed_grid, text_dim=frozen.text.dim)
