"""Segmentation and box metrics.

- DAVIS region similarity J and contour accuracy F, with the behaviour of the official DAVIS 2017 evaluation
  (davisvideochallenge/davis2017-evaluation, ``davis2017/metrics.py``: ``db_eval_iou`` and ``f_measure``);
- the A2D-Sentences / JHMDB-Sentences summary: precision@K, overall IoU and mean IoU;
- pairwise IoU of xyxy boxes.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

IOU_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
BOUNDARY_FRACTION = 0.008  # DAVIS ``bound_th``: match tolerance as a fraction of the image diagonal


def _binary_pair(gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Both masks as booleans of the same shape, with ``void`` pixels cleared."""
    if gt.shape != pred.shape or gt.ndim != 2:
        raise ValueError(f"expected two (H, W) masks of one shape, got {gt.shape} and {pred.shape}")
    gt, pred = gt.astype(bool), pred.astype(bool)
    if void is not None:
        if void.shape != gt.shape:
            raise ValueError(f"void mask {void.shape} does not match the masks {gt.shape}")
        keep = ~void.astype(bool)
        gt, pred = gt & keep, pred & keep
    return gt, pred


def mask_intersection_union(gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None = None) -> tuple[int, int]:
    """Pixel counts of the intersection and the union of two binary (H, W) masks; ``void`` pixels are ignored."""
    gt, pred = _binary_pair(gt, pred, void)
    return int(np.count_nonzero(gt & pred)), int(np.count_nonzero(gt | pred))


def region_similarity(gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None = None) -> float:
    """DAVIS J: intersection over union of two binary masks, 1 when both are empty; ``void`` pixels are ignored."""
    intersection, union = mask_intersection_union(gt, pred, void)
    return 1.0 if union == 0 else intersection / union


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """One-pixel-wide boundary of a binary (H, W) mask, as DAVIS's ``seg2bmap`` draws it.

    A pixel is on the boundary when it differs from its right, lower or lower-right neighbour, counting only
    the neighbours inside the image: in the last row only the right one, in the last column only the lower
    one, and never for the bottom-right pixel. (``seg2bmap``'s resampling to another width/height is not
    reproduced: ``f_measure`` never asks for it.)
    """
    seg = mask.astype(bool)
    bmap = np.zeros_like(seg)
    bmap[:, :-1] |= seg[:, :-1] != seg[:, 1:]
    bmap[:-1, :] |= seg[:-1, :] != seg[1:, :]
    bmap[:-1, :-1] |= seg[:-1, :-1] != seg[1:, 1:]
    return bmap


def disk(radius: int) -> np.ndarray:
    """A (2r+1, 2r+1) uint8 structuring element of the points with x^2 + y^2 <= r^2 (skimage's ``disk``)."""
    offsets = np.arange(-radius, radius + 1)
    return (offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2).astype(np.uint8)


def boundary_radius(shape: tuple[int, ...], bound_th: float = BOUNDARY_FRACTION) -> int:
    """DAVIS's match tolerance in pixels: ceil(bound_th * image diagonal); 8 for 854x480 frames."""
    return int(np.ceil(bound_th * np.linalg.norm(shape)))


def _bounding_window(pixels: np.ndarray) -> tuple[slice, slice]:
    """The smallest (rows, cols) window holding every set pixel of a non-empty boolean map."""
    rows = np.flatnonzero(pixels.any(axis=1))
    cols = np.flatnonzero(pixels.any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def contour_accuracy(
    gt: np.ndarray,
    pred: np.ndarray,
    void: np.ndarray | None = None,
    bound_th: float = BOUNDARY_FRACTION,
) -> float:
    """DAVIS F: the F-measure of boundary precision and recall, as the official ``f_measure``.

    A boundary pixel of one mask matches when a boundary pixel of the other lies within ``boundary_radius``
    (Euclidean). When a boundary is empty: both empty gives 1, one empty gives 0. Note that, as in the
    official code, a mask covering the whole frame has an empty boundary.
    """
    gt, pred = _binary_pair(gt, pred, void)
    gt_boundary, pred_boundary = boundary_map(gt), boundary_map(pred)
    n_gt, n_pred = np.count_nonzero(gt_boundary), np.count_nonzero(pred_boundary)
    if n_gt == 0 or n_pred == 0:
        return 1.0 if n_gt == n_pred else 0.0
    # Dilating only the window that holds both boundaries changes nothing: only boundary pixels contribute.
    window = _bounding_window(gt_boundary | pred_boundary)
    gt_boundary, pred_boundary = gt_boundary[window], pred_boundary[window]
    kernel = disk(boundary_radius(gt.shape, bound_th))
    gt_dilated = cv2.dilate(gt_boundary.astype(np.uint8), kernel) > 0
    pred_dilated = cv2.dilate(pred_boundary.astype(np.uint8), kernel) > 0
    precision = np.count_nonzero(pred_boundary & gt_dilated) / n_pred
    recall = np.count_nonzero(gt_boundary & pred_dilated) / n_gt
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def j_and_f(gt: np.ndarray, pred: np.ndarray, void: np.ndarray | None = None) -> tuple[float, float, float]:
    """DAVIS (J, F, J&F) of one binary mask pair; J&F is the mean of J and F."""
    j = region_similarity(gt, pred, void)
    f = contour_accuracy(gt, pred, void)
    return j, f, (j + f) / 2


def iou_summary(
    intersections: Sequence[float] | np.ndarray,
    unions: Sequence[float] | np.ndarray,
    thresholds: Sequence[float] = IOU_THRESHOLDS,
) -> dict[str, float]:
    """A2D-Sentences / JHMDB-Sentences metrics from per-sample mask intersections and unions.

    A sample is one annotated (frame, instance, sentence), as in the MTTR and ReferFormer evaluations. Returns
    ``P@K`` for each threshold (the share of samples whose IoU is strictly above K), ``overall_iou`` (total
    intersection / total union) and ``mean_iou`` (mean of the per-sample IoUs). A sample, or the total, with an
    empty union has IoU 1. (MTTR divides in float32 after adding 1e-6 to both counts: its P@K can differ from
    this exact ratio only for a sample whose IoU is within float32 rounding of K, its means by that rounding.)
    """
    inter = np.asarray(intersections, dtype=np.float64)
    union = np.asarray(unions, dtype=np.float64)
    if inter.ndim != 1 or inter.shape != union.shape or inter.size == 0:
        raise ValueError(f"expected two equal, non-empty 1-D sequences, got shapes {inter.shape} and {union.shape}")
    if np.any(inter > union) or np.any(inter < 0):
        raise ValueError("each intersection must be between 0 and its union")
    ious = np.divide(inter, union, out=np.ones_like(inter), where=union > 0)
    summary = {f"P@{k:g}": float(np.mean(ious > k)) for k in thresholds}
    total_union = union.sum()
    summary["overall_iou"] = float(inter.sum() / total_union) if total_union > 0 else 1.0
    summary["mean_iou"] = float(ious.mean())
    return summary
