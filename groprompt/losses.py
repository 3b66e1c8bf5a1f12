"""The GroPrompt losses: L_box (eq. 1, with the confidence, query-selection and deep-supervision terms that a
detector trained from scratch needs), TextCon (eq. 2), ModalCon (eq. 3) and their weighted total (eq. 4)."""

from __future__ import annotations

import torch
from torch import nn

from groprompt.boxes import cxcywh_to_xyxy, generalized_box_iou
from groprompt.config import LossConfig
from groprompt.matching import hungarian_match, matching_cost
from groprompt.models.generator import FrameOutput


def box_loss_terms(outputs: list[FrameOutput], targets: torch.Tensor, valid: torch.Tensor, config: LossConfig) -> dict[str, torch.Tensor]:
    """L_box (eq. 1) of a clip and the terms a detector trained from scratch also needs.

    outputs: one ``FrameOutput`` per frame (levels, B, Q, ...); targets (B, T, 4) normalised cxcywh
    ground-truth boxes; valid (B, T) False where the object is absent.
    - ``l1``, ``giou``: the top-confidence proposal of the final decoder level, as the paper writes L_box;
    - ``aux``: deep supervision, lambda_r L1 + lambda_g GIoU of the top proposal of every earlier level
      (level 0: the selected tokens' own boxes) plus lambda_conf times their confidence loss, and the same box loss
      on the own proposals of every token inside the ground-truth box (dense, so that whichever token query selection
      picks already has a good anchor); weighted apart by lambda_aux;
    - ``conf``: the final level's confidence, with the query that best matches the ground truth as positive;
    - ``select``: tokens inside the box should be the most text-similar (query selection).
    Terms are summed over frames and averaged over the rows (sentences) that have a box in some frame.
    """
    sums = {name: targets.new_zeros(targets.shape[0]) for name in ("l1", "giou", "conf", "select", "aux")}
    for t, output in enumerate(outputs):
        mask = valid[:, t].float()
        boxes, logits = output.boxes, output.logits  # (L, B, Q, 4), (L, B, Q)
        target = targets[:, t][None, :, None, :].expand_as(boxes)
        top = logits.argmax(-1, keepdim=True)
        l1 = (boxes - target).abs().sum(-1).gather(-1, top).squeeze(-1)  # (L, B)
        giou = 1 - generalized_box_iou(cxcywh_to_xyxy(boxes), cxcywh_to_xyxy(target)).gather(-1, top).squeeze(-1)
        confidence = _confidence_loss(boxes, target, logits, config)  # (L, B); level 0 has no confidence head
        sums["l1"] += l1[-1] * mask
        sums["giou"] += giou[-1] * mask
        sums["conf"] += confidence[-1] * mask
        earlier = config.lambda_r * l1[:-1] + config.lambda_g * giou[:-1] + config.lambda_conf * confidence[:-1]
        dense = token_box_loss(output.token_boxes, output.token_centres, targets[:, t], config)
        sums["aux"] += (earlier.sum(0) + dense) * mask
        sums["select"] += selection_loss(output.token_logits, output.token_centres, targets[:, t], config.selection) * mask
    has_box = valid.any(1)
    return {name: masked_mean(value, has_box) for name, value in sums.items()}


def _confidence_loss(boxes: torch.Tensor, target: torch.Tensor, logits: torch.Tensor, config: LossConfig) -> torch.Tensor:
    """(L, B) cross-entropy making the query that best matches the target (lambda_r L1 + lambda_g GIoU) the most
    confident, per decoder level; zero at level 0, whose scores are trained by the selection loss."""
    cost = matching_cost(boxes, target[..., :1, :], None, config.lambda_r, config.lambda_g, 0.0)[..., 0]
    matched = cost.detach().argmin(-1)  # (L, B)
    per_level = nn.functional.cross_entropy(logits.flatten(0, 1), matched.flatten(), reduction="none").reshape(matched.shape)
    return torch.cat([torch.zeros_like(per_level[:1]), per_level[1:]])


def set_loss_terms(
    outputs: list[FrameOutput], members: torch.Tensor, present: torch.Tensor, scored: torch.Tensor, config: LossConfig
) -> dict[str, torch.Tensor]:
    """The set mode's (``model.multi_object``) version of ``box_loss_terms``: every object a sentence names has its box.

    members (R, T, M, 4) normalised cxcywh boxes of each sentence's objects, present (R, T, M) where they exist;
    scored (R, T) the frames whose confidences are trained (annotated frames of a sentence about the clip's video:
    there, no present object means that no query should be confident). Per frame and level, queries are matched one
    to one to the present objects (``hungarian_match``: lambda_r L1 + lambda_g (1 - GIoU) - lambda_conf confidence):
    - ``l1``, ``giou``: of the final level's matched queries, averaged over the frame's objects;
    - ``conf``: a sigmoid focal loss (Grounding DINO's) on every query of the final level, matched ones positive,
      summed and divided by the number of objects (at least one), so that how many boxes to keep is learned;
    - ``aux``: the same box and confidence terms on the earlier levels (level 0: boxes only), and the dense loss on
      the own proposals of the tokens inside an object's box (each token against the object nearest its centre);
    - ``select``: tokens inside any object's box are the positives of query selection.
    Box terms are averaged over the rows with an object in some frame, ``conf`` over the rows with a scored frame.
    """
    sums = {name: members.new_zeros(members.shape[0]) for name in ("l1", "giou", "conf", "select", "aux")}
    for t, output in enumerate(outputs):
        targets, exists = members[:, t], present[:, t]  # (R, M, 4), (R, M)
        boxed, count = exists.any(-1).float(), exists.sum(-1).clamp(min=1).float()
        l1, giou, confidence = _matched_terms(output.boxes, output.logits, targets, exists, config)  # (L, R) each
        sums["l1"] += l1[-1] / count * boxed
        sums["giou"] += giou[-1] / count * boxed
        sums["conf"] += confidence[-1] / count * scored[:, t].float()
        earlier = (config.lambda_r * l1[:-1] + config.lambda_g * giou[:-1]) / count * boxed + config.lambda_conf * confidence[
            :-1
        ] / count * scored[:, t].float()
        inside, nearest = _inside_members(output.token_centres, targets, exists)
        dense = _token_targets_loss(output.token_boxes, targets.gather(1, nearest[..., None].expand(-1, -1, 4)), inside, config)
        sums["aux"] += earlier.sum(0) + dense * boxed
        first = targets.gather(1, exists.float().argmax(-1)[:, None, None].expand(-1, 1, 4))[:, 0, :2]
        if output.token_logits.shape[-1]:
            sums["select"] += _selection_loss(output.token_logits, output.token_centres, inside, first, config.selection) * boxed
    has_box = present.flatten(1).any(1)
    terms = {name: masked_mean(value, has_box) for name, value in sums.items() if name != "conf"}
    return {**terms, "conf": masked_mean(sums["conf"], scored.any(1))}


def _matched_terms(
    boxes: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor, exists: torch.Tensor, config: LossConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(L, R) summed L1, summed (1 - GIoU) of the matched queries and the focal confidence loss of every query, per
    level, of boxes (L, R, Q, 4) and logits (L, R, Q) against the present ``targets`` (R, M, 4); level 0 has no
    confidence head (its confidence loss is zero and its matching uses boxes only)."""
    levels = boxes.shape[0]
    probabilities = torch.sigmoid(logits)
    scale = torch.tensor([0.0] + [config.lambda_conf] * (levels - 1), device=boxes.device)[:, None, None]
    cost = matching_cost(boxes, targets[None].expand(levels, -1, -1, -1), probabilities * scale, config.lambda_r, config.lambda_g, 1.0)
    matched = hungarian_match(cost, exists[None].expand(levels, -1, -1))  # (L, R, Q)
    assigned = matched >= 0
    picked = targets[None].expand(levels, -1, -1, -1).gather(2, matched.clamp(min=0)[..., None].expand(-1, -1, -1, 4))
    l1 = ((boxes - picked).abs().sum(-1) * assigned).sum(-1)
    giou = ((1 - generalized_box_iou(cxcywh_to_xyxy(boxes), cxcywh_to_xyxy(picked))) * assigned).sum(-1)
    focal = sigmoid_focal_loss(logits, assigned.to(logits.dtype)).sum(-1)
    return l1, giou, torch.cat([torch.zeros_like(focal[:1]), focal[1:]])


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Element-wise focal loss (Lin et al.) of sigmoid confidences against 0/1 targets, as Deformable DETR and
    Grounding DINO train their confidences."""
    probabilities = torch.sigmoid(logits)
    cross_entropy = nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    miss = probabilities * (1 - targets) + (1 - probabilities) * targets
    return (alpha * targets + (1 - alpha) * (1 - targets)) * cross_entropy * miss**gamma


def _inside_members(centres: torch.Tensor, targets: torch.Tensor, exists: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(R, N) 1.0 where token n's centre lies in a present object's box (targets (R, M, 4), exists (R, M)), and
    (R, N) the index of the present object whose centre is nearest among those whose box holds it."""
    inside = (
        torch.stack([inside_box(centres, targets[:, m]) for m in range(targets.shape[1])], dim=1) * exists[..., None].float()
    )  # (R, M, N)
    distance = (centres[None, None] - targets[:, :, None, :2]).square().sum(-1)  # (R, M, N)
    nearest = distance.masked_fill(inside == 0, float("inf")).argmin(1)
    return inside.amax(1), nearest


def masked_mean(values: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """The mean of ``values`` over the rows where ``rows`` is True (0 when there are none)."""
    rows = rows.to(values.dtype)
    return (values * rows).sum() / rows.sum().clamp(min=1)


def inside_box(centres: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B, N) 1.0 where token centre n (N, 2) lies in sample b's target box (B, 4) cxcywh, else 0.0."""
    box = cxcywh_to_xyxy(target)
    x, y = centres[:, 0], centres[:, 1]
    inside = (x >= box[:, None, 0]) & (x <= box[:, None, 2]) & (y >= box[:, None, 1]) & (y <= box[:, None, 3])
    return inside.float()


def token_box_loss(token_boxes: torch.Tensor, centres: torch.Tensor, target: torch.Tensor, config: LossConfig) -> torch.Tensor:
    """(B,) lambda_r L1 + lambda_g GIoU of the own proposals (B, N, 4) of the tokens inside the target box, averaged
    over them (0 where none is inside, or the generator has no per-token proposals)."""
    return _token_targets_loss(token_boxes, target[:, None, :].expand_as(token_boxes), inside_box(centres, target), config)


def _token_targets_loss(token_boxes: torch.Tensor, targets: torch.Tensor, inside: torch.Tensor, config: LossConfig) -> torch.Tensor:
    """(B,) lambda_r L1 + lambda_g GIoU of each token's own proposal (B, N, 4) against its target (B, N, 4), averaged
    over the tokens where ``inside`` (B, N) is 1."""
    l1 = (token_boxes - targets).abs().sum(-1)
    giou = 1 - generalized_box_iou(cxcywh_to_xyxy(token_boxes), cxcywh_to_xyxy(targets))
    return ((config.lambda_r * l1 + config.lambda_g * giou) * inside).sum(1) / inside.sum(1).clamp(min=1)


def selection_loss(token_logits: torch.Tensor, centres: torch.Tensor, target: torch.Tensor, kind: str = "bce") -> torch.Tensor:
    """(B,) the query-selection loss; tokens whose cell centre lies in the target box are the positives.

    - ``bce``: balanced binary cross-entropy, positives and negatives averaged apart;
    - ``softmax``: cross-entropy of the softmax over the frame's tokens against the uniform distribution on the
      positives (the token nearest to the box centre where no centre lies in the box): the tokens compete, as the
      top-K selection that follows makes them.
    """
    if token_logits.shape[-1] == 0:  # a generator without token scores (Grounding DINO keeps its own selection)
        return token_logits.new_zeros(token_logits.shape[0])
    return _selection_loss(token_logits, centres, inside_box(centres, target), target[:, :2], kind)


def _selection_loss(
    token_logits: torch.Tensor, centres: torch.Tensor, inside: torch.Tensor, fallback: torch.Tensor, kind: str
) -> torch.Tensor:
    """``selection_loss`` with the positives given (B, N), and the point (B, 2) whose nearest token is the positive
    where there are none (softmax)."""
    if kind == "softmax":
        nearest = (centres[None] - fallback[:, None, :]).square().sum(-1).argmin(-1)
        fallback = nn.functional.one_hot(nearest, centres.shape[0]).to(inside.dtype)
        wanted = torch.where(inside.sum(1, keepdim=True) > 0, inside, fallback)
        wanted = wanted / wanted.sum(1, keepdim=True)
        return -(wanted * token_logits.log_softmax(-1)).sum(1)
    per_token = nn.functional.binary_cross_entropy_with_logits(token_logits, inside, reduction="none")
    positives = (per_token * inside).sum(1) / inside.sum(1).clamp(min=1)
    negatives = (per_token * (1 - inside)).sum(1) / (1 - inside).sum(1).clamp(min=1)
    return positives + negatives


def textcon_loss(
    anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, valid: torch.Tensor, rows: torch.Tensor, margin: float = 0.0
) -> torch.Tensor:
    """Eq. 2: sum over frames of max(0, ||p_i - p^_i|| - ||p_i - p_j|| + margin), averaged over ``rows``.

    anchor/positive/negative: (B, T, ...) prompt embeddings of the predicted box for S_i, of the
    ground-truth box, and of the predicted box for S_j; valid (B, T) marks frames with a ground truth;
    rows (B,) the sentences that have a partner S_j in the same video and a box.
    """
    d_positive = (anchor - positive).flatten(2).norm(dim=-1)
    d_negative = (anchor - negative).flatten(2).norm(dim=-1)
    per_frame = torch.relu(d_positive - d_negative + margin) * valid.float()
    return masked_mean(per_frame.sum(1), rows)


def modalcon_loss(
    video: torch.Tensor, sentence: torch.Tensor, other: torch.Tensor, rows: torch.Tensor, margin: float = 0.0
) -> torch.Tensor:
    """Eq. 3: max(0, ||f_i - z_i|| - ||f_i - z_j|| + margin), averaged over ``rows``; inputs (B, D), rows (B,)."""
    return masked_mean(torch.relu((video - sentence).norm(dim=-1) - (video - other).norm(dim=-1) + margin), rows)


def total_loss(terms: dict[str, torch.Tensor], config: LossConfig) -> torch.Tensor:
    """Eq. 4: L_box + lambda_f L_TextCon + lambda_v L_ModalCon, each contrastive term only where switched on."""
    total = (
        config.lambda_r * terms["l1"]
        + config.lambda_g * terms["giou"]
        + config.lambda_conf * terms["conf"]
        + config.lambda_select * terms["select"]
        + config.lambda_aux * terms["aux"]
    )
    if config.textcon and "textcon" in terms:
        total = total + config.lambda_f * terms["textcon"]
    if config.modalcon and "modalcon" in terms:
        total = total + config.lambda_v * terms["modalcon"]
    return total
