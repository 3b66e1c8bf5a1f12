"""The proposal generator's interface, which both kinds implement, and what it outputs per frame.

A generator turns B clips (cached SAM embeddings and, for one that reads them, pixels) and B sentences into one
``FrameOutput`` per frame and a unit sentence feature per clip (ModalCon's z); ``stream`` runs it online over a
video, one frame at a time. The training loss, validation, evaluation and inference use nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from groprompt.config import LossConfig
from groprompt.models.frozen import FrozenEncoders


@dataclass(frozen=True)
class FrameOutput:
    """Predictions for one frame. Level 0 holds the selected tokens' own proposals, then one level per layer."""

    boxes: torch.Tensor  # (levels, B, Q, 4) normalised cxcywh
    logits: torch.Tensor  # (levels, B, Q) confidences
    token_logits: torch.Tensor  # (B, N) query-selection scores of every visual token
    token_centres: torch.Tensor  # (N, 2) normalised (x, y) of each token's cell
    token_boxes: torch.Tensor  # (B, N, 4) every token's own proposal (level 0 draws from these)

    def top_boxes(self) -> torch.Tensor:
        """(B, 4) the final layer's top-confidence box per sample."""
        best = self.logits[-1].argmax(-1)
        return self.boxes[-1, torch.arange(best.shape[0]), best]

    def top_scores(self) -> torch.Tensor:
        """(B,) the top box's confidence in [0, 1]: the sigmoid of its logit (Grounding DINO's convention: a
        query's best token logit), so it depends on that query alone, not on how many queries there are."""
        return torch.sigmoid(self.logits[-1].amax(-1))

    def kept_boxes(self, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The set mode's boxes: (B, Q, 4) the final layer's boxes, NaN where their confidence (the sigmoid of the
        logit, as ``top_scores``) is under ``threshold``, and (B, Q) the confidences."""
        scores = torch.sigmoid(self.logits[-1])
        return self.boxes[-1].masked_fill((scores < threshold)[..., None], torch.nan), scores


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
