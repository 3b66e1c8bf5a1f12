"""Make ``import torchvision`` work where its compiled ops cannot load.

PyPI's torchvision wheel is a CUDA build. With the CPU build of torch its ``_C`` extension fails to
load, and torchvision's import then stops at ``operator torchvision::nms does not exist`` (it registers
fake kernels for ``nms``/``qnms`` unconditionally). That breaks ``segment_anything``, ``timm`` and
``transformers``. When, and only when, the compiled ops fail to load, this module defines the two
missing operator schemas with a pure-torch NMS. Where torchvision's ops load it does nothing.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

_LIBRARY: torch.library.Library | None = None  # kept alive: dropping it unregisters the ops


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression over xyxy boxes; indices of kept boxes by decreasing score."""
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    order = torch.argsort(scores, descending=True, stable=True)
    boxes = boxes[order].to(torch.float64)
    areas = (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)
    top_left = torch.maximum(boxes[:, None, :2], boxes[None, :, :2])
    bottom_right = torch.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    overlap = (bottom_right - top_left).clamp(min=0).prod(dim=2)
    iou = overlap / (areas[:, None] + areas[None, :] - overlap)
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    keep = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > iou_threshold
    return order[torch.tensor(keep, dtype=torch.long, device=order.device)]


def _compiled_ops_load() -> bool:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return True  # no torchvision: nothing to repair
    for library in Path(spec.origin).parent.glob("_C*.so"):
        try:
            torch.ops.load_library(str(library))
            return True
        except (ImportError, OSError):
            return False
    return False


def register_missing_torchvision_ops() -> bool:
    """Define ``torchvision::nms`` and ``torchvision::qnms`` if absent; True if this was needed."""
    global _LIBRARY
    if _LIBRARY is not None or _compiled_ops_load():
        return False
    _LIBRARY = torch.library.Library("torchvision", "DEF")
    for name in ("nms", "qnms"):
        _LIBRARY.define(f"{name}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _LIBRARY.impl("nms", nms, "CompositeExplicitAutograd")
    return True


register_missing_torchvision_ops()
