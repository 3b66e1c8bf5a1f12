"""Box conversions and overlaps (torch, differentiable); generalized IoU as in paper eq. 1."""

from __future__ import annotations

import torch


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 4) centre-size boxes to corner boxes."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 4) corner boxes to centre-size boxes."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], dim=-1)


def union_box(boxes: torch.Tensor) -> torch.Tensor:
    """(..., 4) the box around the finite boxes of (..., K, 4) xyxy boxes (rows with a NaN are left out); all NaN
    where none is finite."""
    finite = torch.isfinite(boxes).all(-1, keepdim=True)
    low = torch.where(finite, boxes, torch.inf).amin(-2)
    high = torch.where(finite, boxes, -torch.inf).amax(-2)
    union = torch.cat([low[..., :2], high[..., 2:]], dim=-1)
    return torch.where(finite.any(-2), union, torch.nan)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Area of (..., 4) xyxy boxes (zero for degenerate ones)."""
    return (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(min=0)


def _intersection_union(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    top_left = torch.maximum(a[..., :2], b[..., :2])
    bottom_right = torch.minimum(a[..., 2:], b[..., 2:])
    intersection = (bottom_right - top_left).clamp(min=0).prod(dim=-1)
    return intersection, box_area(a) + box_area(b) - intersection


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Element-wise IoU of two broadcastable (..., 4) xyxy box tensors: the one box IoU of validation and evaluation.

    Degenerate boxes have area 0; a pair whose union is empty has IoU 0. IoU is unchanged by scaling either axis, so
    normalised boxes and frame pixels give the same value."""
    intersection, union = _intersection_union(a, b)
    return torch.where(union > 0, intersection / union.clamp(min=torch.finfo(union.dtype).tiny), torch.zeros_like(union))


def generalized_box_iou(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Element-wise generalized IoU (Rezatofighi et al.): IoU - (enclosing - union) / enclosing."""
    intersection, union = _intersection_union(a, b)
    iou = intersection / (union + eps)
    enclosing = box_area(torch.cat([torch.minimum(a[..., :2], b[..., :2]), torch.maximum(a[..., 2:], b[..., 2:])], dim=-1))
    return iou - (enclosing - union) / (enclosing + eps)
