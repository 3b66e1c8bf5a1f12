"""The GroPrompt model: trainable parts (proposal generator, ModalCon head) beside the frozen encoders."""

from __future__ import annotations

import torch
from torch import nn

from groprompt.config import LossConfig, ModelConfig
from groprompt.data.clips import ClipBatch
from groprompt.engine import compute_losses
from groprompt.models.frozen import FrozenEncoders
from groprompt.models.modalcon import ModalConHead
from groprompt.models.proposal import ProposalGenerator


class GroPrompt(nn.Module):
    """Everything that trains: its state dict is the whole checkpoint."""

    def __init__(self, config: ModelConfig, image_dim: int, grid: int, text_dim: int) -> None:
        super().__init__()
        self.proposal = ProposalGenerator(config, image_dim=image_dim, grid=grid, text_dim=text_dim)
        self.modalcon = ModalConHead(image_dim, text_dim, num_heads=config.num_heads)

    def forward(self, frozen: FrozenEncoders, batch: ClipBatch, loss: LossConfig) -> dict[str, torch.Tensor]:
        """The loss terms of a batch: the whole training computation, so DDP sees every parameter it uses."""
        return compute_losses(self.proposal, self.modalcon, frozen, batch, loss)


def build_model(config: ModelConfig, frozen: FrozenEncoders) -> GroPrompt:
    """The trainable model sized to fit the frozen encoders."""
    return GroPrompt(config, image_dim=frozen.sam.embed_dim, grid=frozen.sam.embed_grid, text_dim=frozen.text.dim)
