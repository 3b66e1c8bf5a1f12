"""The proposal generator run online over one video, one frame at a time: what inference and evaluation share, so
that the same video and sentences give the same boxes in both."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from groprompt.boxes import cxcywh_to_xyxy

if TYPE_CHECKING:
    from groprompt.models.frozen import FrozenEncoders
    from groprompt.models.proposal import FrameOutput, FrameState, ProposalGenerator


def frame_boxes(top_boxes: torch.Tensor, height: int, width: int) -> np.ndarray:
    """(Q, 4) normalised cxcywh to xyxy frame pixels, clipped to the frame."""
    xyxy = cxcywh_to_xyxy(top_boxes.float()).clamp(0, 1)
    scale = torch.tensor([width, height, width, height], dtype=torch.float32)
    return (xyxy.cpu() * scale).numpy()


class OnlineProposals:
    """One video's sentences through the proposal generator, frame after frame: frame t sees frames <= t only,
    through the state each ``step`` carries to the next. The batch is the sentences. Call under no_grad or
    inference_mode, the same for every step."""

    def __init__(self, proposal: ProposalGenerator, frozen: FrozenEncoders, sentences: Sequence[str]) -> None:
        text = frozen.text(list(sentences))
        self.proposal = proposal
        self.text_tokens = proposal.project_text(text)
        self.text_mask = text.mask
        self.state: FrameState | None = None

    def step(self, embedding: torch.Tensor) -> FrameOutput:
        """The output of the next frame, given its SAM image embedding (C, g, g)."""
        expanded = embedding[None].expand(self.text_tokens.shape[0], *embedding.shape)
        output, self.state = self.proposal.forward_frame(expanded, self.text_tokens, self.text_mask, self.state)
        return output
