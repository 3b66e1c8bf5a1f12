"""One-to-one matching of predicted boxes to ground-truth objects (DETR's Hungarian matcher), for the set mode."""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from groprompt.boxes import cxcywh_to_xyxy, generalized_box_iou


def matching_cost(
    boxes: torch.Tensor, targets: torch.Tensor, probabilities: torch.Tensor | None, l1: float, giou: float, score: float
) -> torch.Tensor:
    """(..., Q, M) cost of giving query q (boxes (..., Q, 4) cxcywh, confidences ``probabilities`` (..., Q) or None)
    the target m (targets (..., M, 4) cxcywh): ``l1`` L1 distance + ``giou`` (1 - GIoU) - ``score`` confidence."""
    cost = l1 * (boxes[..., :, None, :] - targets[..., None, :, :]).abs().sum(-1)
    pairs = generalized_box_iou(cxcywh_to_xyxy(boxes[..., :, None, :]), cxcywh_to_xyxy(targets[..., None, :, :]))
    cost = cost + giou * (1 - pairs)
    if probabilities is not None:
        cost = cost - score * probabilities[..., :, None]
    return cost


def hungarian_match(cost: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(..., Q) the target each query is matched to (-1: none), from costs (..., Q, M) and the targets that exist
    (..., M): the assignment of least total cost that matches every existing target to its own query (Q >= M)."""
    costs, present = cost.detach().float().cpu().numpy(), valid.cpu().numpy()
    matched = np.full(costs.shape[:-1], -1, dtype=np.int64)
    for index in np.ndindex(*costs.shape[:-2]):
        targets = np.flatnonzero(present[index])
        if targets.size:
            queries, columns = linear_sum_assignment(costs[index][:, targets])
            matched[index][queries] = targets[columns]
    return torch.from_numpy(matched).to(cost.device)
