"""The GroPrompt model: trainable parts (proposal generator, ModalCon head) beside the frozen encoders, and the
registry that builds the configured proposal generator."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from groprompt.boxes import cxcywh_to_xyxy, union_box, xyxy_to_cxcywh
from groprompt.config import ModelConfig
from groprompt.models.frozen import FrozenEncoders
from groprompt.models.generator import FrameOutput
from groprompt.models.modalcon import ModalConHead


class GroPrompt(nn.Module):
    """Everything that trains: its state dict is the whole checkpoint (a Grounding DINO's frozen parts included).

    ``forward`` gives the proposal generator's predictions; the losses, which also run the ModalCon head, are
    computed by the training wrapper (``groprompt.training.step.TrainingStep``)."""

    def __init__(self, proposal: nn.Module, modalcon: ModalConHead, set_threshold: float | None = None) -> None:
        super().__init__()
        self.proposal = proposal
        self.modalcon = modalcon
        self.set_threshold = set_threshold  # set mode (``model.multi_object``): the confidence a kept box reaches; None: one box

    @property
    def multi_object(self) -> bool:
        """Whether it is in the set mode: a box per object a sentence names, trained on each object's box."""
        return self.set_threshold is not None

    def forward(
        self,
        frozen: FrozenEncoders,
        embeddings: torch.Tensor,
        pixels: torch.Tensor | None,
        sentences: list[str],
        previous: torch.Tensor | None = None,
    ) -> tuple[list[FrameOutput], torch.Tensor]:
        """The generator's outputs per frame and the sentence features (``Generator.run``)."""
        return self.proposal.run(frozen, embeddings, pixels, sentences, previous)

    @torch.no_grad()
    def predict_boxes(
        self, frozen: FrozenEncoders, embeddings: torch.Tensor, sentences: list[str], pixels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-confidence boxes (B, T, 4) normalised cxcywh and their confidences (B, T) of B sentences over P clips
        (``embeddings`` (P, T, C, g, g); ``pixels`` (P, T, 3, S, S) uint8 for a generator that reads them), online over
        frames; P divides B and sentence b reads clip b mod P. In the set mode each frame's box is the union box of the
        kept boxes (NaN where none is kept) and its confidence the highest."""
        outputs, _ = self(frozen, embeddings, pixels, sentences)
        if self.set_threshold is None:
            return torch.stack([output.top_boxes() for output in outputs], dim=1), torch.stack(
                [output.top_scores() for output in outputs], dim=1
            )
        kept = [output.kept_boxes(self.set_threshold) for output in outputs]
        boxes = torch.stack([xyxy_to_cxcywh(union_box(cxcywh_to_xyxy(frame_boxes))) for frame_boxes, _ in kept], dim=1)
        return boxes, torch.stack([scores.amax(-1) for _, scores in kept], dim=1)


def build_model(config: ModelConfig, frozen: FrozenEncoders) -> GroPrompt:
    """The configured proposal generator (``model.proposal``) and a ModalCon head fitting it and the frozen SAM, in the
    set mode with ``model.multi_object``."""
    proposal = build_generator(config, frozen)
    modalcon = ModalConHead(frozen.sam.embed_dim, proposal.sentence_dim, num_heads=config.num_heads)
    return GroPrompt(proposal, modalcon, config.set_score_threshold if config.multi_object else None)


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
