"""The GroPrompt losses: L_box (eq. 1, with the confidence and query-selection terms that a detector
trained from scratch needs), TextCon (eq. 2), ModalCon (eq. 3) and their weighted total (eq. 4)."""

from __future__ import annotations

import torch
from torch import nn

from groprompt.boxes import cxcywh_to_xyxy, generalized_box_iou
from groprompt.config import LossConfig
from groprompt.models.proposal import FrameOutput


def box_loss_terms(
    outputs: list[FrameOutput], targets: torch.Tensor, valid: torch.Tensor, config: LossConfig
) -> dict[str, torch.Tensor]:
    """L1, GIoU, confidence and selection losses of a clip.

    outputs: one ``FrameOutput`` per frame (levels, B, Q, ...); targets (B, T, 4) normalised cxcywh
    ground-truth boxes; valid (B, T) False where the object is absent. L1 and GIoU apply to the
    top-confidence proposal of every frame and level (paper eq. 1); the confidence loss makes the
    query that best matches the ground truth the most confident; the selection loss makes tokens inside
    the box the most text-similar (level 0, the selected tokens' own proposals, is scored by the latter).
    Frame terms are summed over frames and averaged over samples.
    """
    box_levels = slice(None) if config.aux else slice(-1, None)
    decoder_levels = slice(1, None) if config.aux else slice(-1, None)  # level 0 is scored by the selection loss
    sums = {name: targets.new_zeros(targets.shape[0]) for name in ("l1", "giou", "conf", "select")}
    for t, output in enumerate(outputs):
        mask = valid[:, t].float()
        boxes, logits = output.boxes, output.logits  # (L, B, Q, 4), (L, B, Q)
        target = targets[:, t][None, :, None, :].expand_as(boxes)
        l1 = (boxes - target).abs().sum(-1)
        giou = 1 - generalized_box_iou(cxcywh_to_xyxy(boxes), cxcywh_to_xyxy(target))
        top = logits.argmax(-1, keepdim=True)
        sums["l1"] += l1.gather(-1, top).squeeze(-1)[box_levels].sum(0) * mask
        sums["giou"] += giou.gather(-1, top).squeeze(-1)[box_levels].sum(0) * mask
        matched = (config.lambda_r * l1 + config.lambda_g * giou)[decoder_levels].detach().argmin(-1)  # (L', B)
        level_logits = logits[decoder_levels]
        confidence = nn.functional.cross_entropy(level_logits.flatten(0, 1), matched.flatten(), reduction="none")
        sums["conf"] += confidence.reshape(matched.shape).sum(0) * mask
        sums["select"] += selection_loss(output.token_logits, output.token_centres, targets[:, t]) * mask
    return {name: value.mean() for name, value in sums.items()}


def selection_loss(token_logits: torch.Tensor, centres: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B,) balanced BCE: tokens whose cell centre lies in the target box are positives."""
    box = cxcywh_to_xyxy(target)  # (B, 4)
    x, y = centres[:, 0], centres[:, 1]
    inside = (x >= box[:, None, 0]) & (x <= box[:, None, 2]) & (y >= box[:, None, 1]) & (y <= box[:, None, 3])
    inside = inside.float()
    per_token = nn.functional.binary_cross_entropy_with_logits(token_logits, inside, reduction="none")
    positives = (per_token * inside).sum(1) / inside.sum(1).clamp(min=1)
    negatives = (per_token * (1 - inside)).sum(1) / (1 - inside).sum(1).clamp(min=1)
    return positives + negatives


def textcon_loss(
    anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, valid: torch.Tensor, margin: float = 0.0
) -> torch.Tensor:
    """Eq. 2: sum over frames of max(0, ||p_i - p^_i|| - ||p_i - p_j|| + margin), averaged over samples.

    anchor/positive/negative: (B, T, ...) prompt embeddings of the predicted box for S_i, of the
    ground-truth box, and of the predicted box for S_j; valid (B, T) marks frames with a ground truth.
    """
    d_positive = (anchor - positive).flatten(2).norm(dim=-1)
    d_negative = (anchor - negative).flatten(2).norm(dim=-1)
    per_frame = torch.relu(d_positive - d_negative + margin) * valid.float()
    return per_frame.sum(1).mean()


def modalcon_loss(video: torch.Tensor, sentence: torch.Tensor, other: torch.Tensor, margin: float = 0.0) -> torch.Tensor:
    """Eq. 3: max(0, ||f_i - z_i|| - ||f_i - z_j|| + margin), averaged over samples; inputs (B, D)."""
    return torch.relu((video - sentence).norm(dim=-1) - (video - other).norm(dim=-1) + margin).mean()


def total_loss(terms: dict[str, torch.Tensor], config: LossConfig) -> torch.Tensor:
    """Eq. 4: L_box + lambda_f L_TextCon + lambda_v L_ModalCon, each contrastive term only where switched on."""
    total = (
        config.lambda_r * terms["l1"]
        + config.lambda_g * terms["giou"]
        + config.lambda_conf * terms["conf"]
        + config.lambda_select * terms["select"]
    )
    if config.textcon and "textcon" in terms:
        total = total + config.lambda_f * terms["textcon"]
    if config.modalcon and "modalcon" in terms:
        total = total + config.lambda_v * terms["modalcon"]
    return total
