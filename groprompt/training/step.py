"""One training step on a batch of clips, independent of Ray: every loss term, in the module that DDP wraps."""

from __future__ import annotations

import torch
from torch import nn

from groprompt.boxes import cxcywh_to_xyxy
from groprompt.config import LossConfig
from groprompt.data.batches import ClipBatch
from groprompt.losses import box_loss_terms, modalcon_loss, set_loss_terms, textcon_loss, total_loss
from groprompt.models.frozen import FrozenEncoders
from groprompt.models.groprompt import GroPrompt


def to_prompt_coordinates(boxes: torch.Tensor, input_sizes: torch.Tensor) -> torch.Tensor:
    """(B, T, 4) normalised cxcywh boxes to xyxy pixels of SAM's input, per sample's (h, w)."""
    h, w = input_sizes[:, 0].float(), input_sizes[:, 1].float()
    scale = torch.stack([w, h, w, h], dim=-1)[:, None, :]
    return cxcywh_to_xyxy(boxes) * scale


class TrainingStep(nn.Module):
    """The model as training runs it: ``forward`` is the whole loss computation (``compute_losses``), so that
    DistributedDataParallel, which wraps this module, sees every parameter the step uses (the ModalCon head's too).
    Its parameters are the model's, in the same order; checkpoints hold the model's state dict."""

    def __init__(self, model: GroPrompt) -> None:
        super().__init__()
        self.model = model

    def forward(self, frozen: FrozenEncoders, batch: ClipBatch, loss: LossConfig) -> dict[str, torch.Tensor]:
        """The loss terms of a batch (``compute_losses``)."""
        return compute_losses(self.model, frozen, batch, loss)


def compute_losses(model: GroPrompt, frozen: FrozenEncoders, batch: ClipBatch, config: LossConfig) -> dict[str, torch.Tensor]:
    """All loss terms of paper eq. 1-4 for a batch, plus ``total``, with the weights that apply to the generator.

    The model's set mode (``model.multi_object``) trains a box per object a sentence names (``set_loss_terms``) instead of one box
    per sentence, the union's (``box_loss_terms``); TextCon's positive is then, per frame, the sentence's object
    nearest its top box, so that both contrastive terms still compare the one top box per frame.

    Both sentences of each pair run through the proposal generator as one batch of 2B: each is the
    other's negative (TextCon, ModalCon) when both name objects of the same video (``batch.same_video``), and each
    gets the box loss where its ground truth exists. Every mean is over the rows a term applies to. The B clips' pixels go
    once: a generator that reads them repeats the clips over the 2B sentences itself.
    """
    config = model.proposal.loss_config(config)
    multi_object = model.multi_object
    size = len(batch.sentences)
    targets = torch.cat([batch.boxes, batch.negative_boxes])
    valid = torch.cat([batch.valid, batch.negative_valid])
    outputs, sentence_features = model(frozen, batch.embeddings, batch.pixels, batch.sentences + batch.negatives, batch.previous)
    if multi_object:
        members, present = batch.target_sets()
        annotated = torch.ones_like(valid) if batch.annotated is None else torch.cat([batch.annotated, batch.annotated])
        about_clip = torch.cat([torch.ones_like(batch.same_video), batch.same_video])  # another video's sentence: no say
        terms = set_loss_terms(outputs, members, present, annotated & about_clip[:, None], config)
    else:
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
            if multi_object:
                targets = nearest_members(predicted, members, present)
            ground_truth = _embed(frozen, to_prompt_coordinates(targets, sizes))
            terms["textcon"] = textcon_loss(prompts, ground_truth, prompts.roll(size, 0), valid, rows, config.margin)
        if config.modalcon:
            video = model.modalcon(prompts, torch.cat([batch.embeddings, batch.embeddings]), frozen.sam.dense_pe())
            own = sentence_features.to(video.dtype)
            terms["modalcon"] = modalcon_loss(video, own, own.roll(size, 0), rows, config.margin)
    terms["total"] = total_loss(terms, config)
    return terms


def nearest_members(boxes: torch.Tensor, members: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """(R, T, 4) per row and frame, the present member box (members (R, T, M, 4), present (R, T, M)) with the least
    L1 distance to ``boxes`` (R, T, 4); any where none is present."""
    distance = (members - boxes[:, :, None, :].detach()).abs().sum(-1).masked_fill(~present, float("inf"))
    return members.gather(2, distance.argmin(-1)[..., None, None].expand(-1, -1, 1, 4))[:, :, 0]


def _embed(frozen: FrozenEncoders, boxes: torch.Tensor) -> torch.Tensor:
    """(N, T, 4) prompt-space xyxy boxes to (N, T, 2, C) prompt-encoder embeddings."""
    n, t = boxes.shape[:2]
    return frozen.sam.embed_boxes(boxes.flatten(0, 1)).reshape(n, t, 2, -1)
