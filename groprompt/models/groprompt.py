"""The GroPrompt model: trainable parts (proposal generator, ModalCon head) beside the frozen encoders."""

from __future__ import annotations

import torch
from torch import nn

from groprompt.config import LossConfig, ModelConfig
from groprompt.data.clips import ClipBatch
from groprompt.engine import compute_losses
from groprompt.models.frozen import FrozenEncoders
from groprompt.models.generator import build_generator
from groprompt.models.modalcon import ModalConHead


class GroPrompt(nn.Module):
    """Everything that trains: its state dict is the whole checkpoint (a Grounding DINO's frozen parts included)."""

    def __init__(self, proposal: nn.Module, modalcon: ModalConHead) -> None:
        super().__init__()
        self.proposal = proposal
        self.modalcon = modalcon

    def forward(self, frozen: FrozenEncoders, batch: ClipBatch, loss: LossConfig) -> dict[str, torch.Tensor]:
        """The loss terms of a batch: the whole training computation, so DDP sees every parameter it uses."""
        return compute_losses(self.proposal, self.modalcon, frozen, batch, loss)


def build_model(config: ModelConfig, frozen: FrozenEncoders) -> GroPrompt:
    """The configured proposal generator (``model.proposal``) and a ModalCon head fitting it and the frozen SAM."""
    proposal = build_generator(config, frozen)
    return GroPrompt(proposal, ModalConHead(frozen.sam.embed_dim, proposal.sentence_dim, num_heads=config.num_heads))
