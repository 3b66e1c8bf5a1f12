"""Training and prediction steps on batches of clips, independent of Ray."""

from __future__ import annotations

import torch

from groprompt.boxes import cxcywh_to_xyxy
from groprompt.config import LossConfig
from groprompt.data.clips import ClipBatch
from groprompt.losses import box_loss_terms, modalcon_loss, textcon_loss, total_loss
from groprompt.models.frozen import FrozenEncoders
from groprompt.models.generator import Generator
from groprompt.models.modalcon import ModalConHead


def to_prompt_coordinates(boxes: torch.Tensor, input_sizes: torch.Tensor) -> torch.Tensor:
    """(B, T, 4) normalised cxcywh boxes to xyxy pixels of SAM's input, per sample's (h, w)."""
    h, w = input_sizes[:, 0].float(), input_sizes[:, 1].float()
    scale = torch.stack([w, h, w, h], dim=-1)[:, None, :]
    return cxcywh_to_xyxy(boxes) * scale


def compute_losses(
    proposal: Generator, modalcon: ModalConHead, frozen: FrozenEncoders, batch: ClipBatch, config: LossConfig
) -> dict[str, torch.Tensor]:
    """All loss terms of paper eq. 1-4 for a batch, plus ``total``, with the weights that apply to the generator.

    Both sentences of each pair run through the proposal generator as one batch of 2B: each is the
    other's negative (TextCon, ModalCon) when both name objects of the same video (``batch.same_video``), and each
    gets the box loss where its ground truth exists. Every mean is over the rows a term applies to. The B clips' pixels go
    once: a generator that reads them repeats the clips over the 2B sentences itself.
    """
    config = proposal.loss_config(config)
    size = len(batch.sentences)
    targets = torch.cat([batch.boxes, batch.negative_boxes])
    valid = torch.cat([batch.valid, batch.negative_valid])
    outputs, sentence_features = proposal.run(frozen, batch.embeddings, batch.pixels, batch.sentences + batch.negatives, batch.previous)
    terms = box_loss_terms(outputs, targets, valid, config)

    if config.textcon or config.modalcon:
        sizes = torch.cat([batch.input_sizes, batch.input_sizes])
        predicted = torch.stack([output.top_boxes() for output in outputs], dim=1)  # (2B, T, 4)
        prompts = _embed(frozen, to_prompt_coordinates(predicted, sizes))
        # A sentence is an anchor where it has a partner in its own video (TextCon's negative is the partner's
        # predicted box, ModalCon's its sentence feature: neither needs the partner's object in the clip) and where
        # its own object is in the clip (TextCon's positive is its ground-truth box).
        rows = valid.any(1) & torch.cat([batch.same_video, batch.same_video])
        if config.textcon:
            ground_truth = _embed(frozen, to_prompt_coordinates(targets, sizes))
            terms["textcon"] = textcon_loss(prompts, ground_truth, prompts.roll(size, 0), valid, rows, config.margin)
        if config.modalcon:
            video = modalcon(prompts, torch.cat([batch.embeddings, batch.embeddings]), frozen.sam.dense_pe())
            own = sentence_features.to(video.dtype)
            terms["modalcon"] = modalcon_loss(video, own, own.roll(size, 0), rows, config.margin)
    terms["total"] = total_loss(terms, config)
    return terms


def _embed(frozen: FrozenEncoders, boxes: torch.Tensor) -> torch.Tensor:
    """(N, T, 4) prompt-space xyxy boxes to (N, T, 2, C) prompt-encoder embeddings."""
    n, t = boxes.shape[:2]
    return frozen.sam.embed_boxes(boxes.flatten(0, 1)).reshape(n, t, 2, -1)


@torch.no_grad()
def predict_boxes(
    proposal: Generator, frozen: FrozenEncoders, embeddings: torch.Tensor, sentences: list[str], pixels: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-confidence boxes (B, T, 4) normalised cxcywh and their confidences (B, T) of B sentences over P clips
    (``embeddings`` (P, T, C, g, g); ``pixels`` (P, T, 3, S, S) uint8 for a generator that reads them), online over
    frames; P divides B and sentence b reads clip b mod P."""
    outputs, _ = proposal.run(frozen, embeddings, pixels, sentences)
    boxes = torch.stack([output.top_boxes() for output in outputs], dim=1)
    scores = torch.stack([output.top_scores() for output in outputs], dim=1)
    return boxes, scores
