"""The GroPrompt model: trainable parts (proposal generator, ModalCon head) beside the frozen encoders."""

from __future__ import annotations

import torch
from torch import nn

from groprompt.config import LossConfig, ModelConfig
from groprompt.data.clips import ClipBatch
from groprompt.models.frozen import FrozenEncoders
from groprompt.models.generator import build_generator
from groprompt.models.modalcon import ModalConHead
from groprompt.training.step import compute_losses


class GroPrompt(nn.Module):
    """Everything that trains: its state dict is the whole checkpoint (a Grounding DINO's frozen parts included)."""

    def __init__(self, proposal: nn.Module, modalcon: ModalConHead, set_threshold: float | None = None) -> None:
        super().__init__()
        self.proposal = proposal
        self.modalcon = modalcon
        self.set_threshold = set_threshold  # set mode (``model.multi_object``): the confidence a kept box reaches; None: one box

    @property
    def multi_object(self) -> bool:
        """Whether it is in the set mode: a box per object a sentence names, trained on each object's box."""
        return self.set_threshold is not None

    def forward(self, frozen: FrozenEncoders, batch: ClipBatch, loss: LossConfig) -> dict[str, torch.Tensor]:
        """The loss terms of a batch: the whole training computation, so DDP sees every parameter it uses."""
        return compute_losses(self.proposal, self.modalcon, frozen, batch, loss, self.multi_object)


def build_model(config: ModelConfig, frozen: FrozenEncoders) -> GroPrompt:
    """The configured proposal generator (``model.proposal``) and a ModalCon head fitting it and the frozen SAM, in the
    set mode with ``model.multi_object``."""
    proposal = build_generator(config, frozen)
    modalcon = ModalConHead(frozen.sam.embed_dim, proposal.sentence_dim, num_heads=config.num_heads)
    return GroPrompt(proposal, modalcon, config.set_score_threshold if config.multi_object else None)
