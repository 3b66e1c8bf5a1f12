"""DAVIS J and F on hand-made masks and against a brute-force reference; RVOS IoU summaries; box IoU."""

from __future__ import annotations

import numpy as np
import pytest

from groprompt.evaluation.metrics import (
    boundary_map,
    boundary_radius,
    contour_accuracy,
    disk,
    iou_summary,
    j_and_f,
    mask_intersection_union,
    region_similarity,
)


def square(shape: tuple[int, int], top: int, left: int, size: int) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[top : top + size, left : left + size] = True
    return mask


def reference_boundary(mask: np.ndarray) -> np.ndarray:
    """seg2bmap by another route: pad by repeating the last row and column, so that a neighbour outside the
    image equals a neighbour already compared (or the pixel itself), then compare with the three shifts."""
    padded = np.pad(mask.astype(bool), ((0, 1), (0, 1)), mode="edge")
    h, w = mask.shape
    centre = padded[:h, :w]
    return (centre != padded[:h, 1:]) | (centre != padded[1:, :w]) | (centre != padded[1:, 1:])


def reference_f(gt: np.ndarray, pred: np.ndarray) -> float:
    """Boundary F by brute force: a boundary pixel matches if the other boundary has a pixel within radius r."""
    radius = np.ceil(0.008 * np.sqrt(gt.shape[0] ** 2 + gt.shape[1] ** 2))
    gt_points = np.argwhere(reference_boundary(gt))
    pred_points = np.argwhere(reference_boundary(pred))
    if len(gt_points) == 0 or len(pred_points) == 0:
        return float(len(gt_points) == len(pred_points))
    squared = ((pred_points[:, None, :] - gt_points[None, :, :]) ** 2).sum(-1)
    precision = np.mean(squared.min(axis=1) <= radius**2)
    recall = np.mean(squared.min(axis=0) <= radius**2)
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def random_blobs(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A few random discs and rectangles, some cut by the image border."""
    h, w = shape
    yy, xx = np.mgrid[:h, :w]
    mask = np.zeros(shape, dtype=bool)
    for _ in range(rng.integers(1, 5)):
        cy, cx = rng.integers(-5, h + 5), rng.integers(-5, w + 5)
        if rng.random() < 0.5:
            mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= rng.integers(2, max(3, min(h, w) // 3)) ** 2
        else:
            mask[max(cy, 0) : cy + rng.integers(1, h + 1), max(cx, 0) : cx + rng.integers(1, w + 1)] = True
    return mask


# --- J -------------------------------------------------------------------------------------------------------


def test_region_similarity_by_hand() -> None:
    gt = square((10, 10), 2, 2, 4)
    assert region_similarity(gt, gt) == 1.0
    assert region_similarity(gt, square((10, 10), 2, 3, 4)) == pytest.approx(12 / 20)
    assert region_similarity(gt, square((10, 10), 2, 2, 2)) == pytest.approx(4 / 16)
    assert region_similarity(gt, square((10, 10), 7, 7, 2)) == 0.0


def test_region_similarity_empty_cases() -> None:
    empty = np.zeros((6, 7), dtype=bool)
    assert region_similarity(empty, empty) == 1.0
    assert region_similarity(empty, square((6, 7), 1, 1, 2)) == 0.0
    assert region_similarity(square((6, 7), 1, 1, 2), empty) == 0.0


def test_region_similarity_ignores_void() -> None:
    gt = square((10, 10), 2, 2, 4)
    pred = square((10, 10), 2, 2, 6)  # 20 extra pixels, 12 of them in the void band
    void = np.zeros((10, 10), dtype=bool)
    void[6:8, :] = True
    assert region_similarity(gt, pred) == pytest.approx(16 / 36)
    assert region_similarity(gt, pred, void) == pytest.approx(16 / 24)


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="shape"):
        region_similarity(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="shape"):
        contour_accuracy(np.zeros((4, 4)), np.zeros((5, 4)))


# --- F -------------------------------------------------------------------------------------------------------


def test_disk_matches_skimage_definition() -> None:
    assert disk(0).tolist() == [[1]]
    assert disk(1).tolist() == [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    assert disk(2).tolist() == [
        [0, 0, 1, 0, 0],
        [0, 1, 1, 1, 0],
        [1, 1, 1, 1, 1],
        [0, 1, 1, 1, 0],
        [0, 0, 1, 0, 0],
    ]
    assert disk(8).shape == (17, 17) and disk(8).sum() == 197  # lattice points with x^2 + y^2 <= 64


def test_boundary_radius_is_davis_tolerance() -> None:
    assert boundary_radius((480, 854)) == 8  # ceil(0.008 * 979.6)
    assert boundary_radius((10, 10)) == 1
    assert boundary_radius((200, 300)) == 3


def test_boundary_map_of_a_square_by_hand() -> None:
    # seg2bmap offsets the contour half a pixel towards the origin: the outside pixels above and left of the
    # square, and the square's own last column and last row.
    bmap = boundary_map(square((8, 8), 2, 2, 3))
    expected = np.zeros((8, 8), dtype=bool)
    expected[1, 1:5] = True  # row above, from the upper-left diagonal pixel
    expected[2:5, 1] = True  # column to the left
    expected[2:5, 4] = True  # the square's last column
    expected[4, 2:4] = True  # the square's last row
    assert np.array_equal(bmap, expected)


def test_boundary_map_at_the_image_edges() -> None:
    # Only neighbours inside the image count: a full frame has no boundary, and a mask touching the bottom
    # or right edge has no boundary drawn along that edge.
    assert not boundary_map(np.ones((5, 6), dtype=bool)).any()
    bottom_right = np.zeros((4, 4), dtype=bool)
    bottom_right[2:, 2:] = True
    expected = np.zeros((4, 4), dtype=bool)
    expected[1, 1:] = True
    expected[2:, 1] = True
    assert np.array_equal(boundary_map(bottom_right), expected)


def test_contour_accuracy_by_hand() -> None:
    # 10x10 frame: radius 1, so a match is the same pixel or a 4-neighbour.
    gt = square((10, 10), 2, 2, 4)
    assert contour_accuracy(gt, gt) == 1.0
    # Shift by one column: every boundary pixel has a match within one pixel, while J is 12/20.
    shifted = square((10, 10), 2, 3, 4)
    assert contour_accuracy(gt, shifted) == 1.0
    assert region_similarity(gt, shifted) == pytest.approx(0.6)
    # One pixel inside the square: its boundary {(2,2),(2,3),(3,2),(3,3)}; three of four match the square's
    # 16-pixel boundary (precision 3/4), which has 4 pixels near it ((1,2),(1,3),(2,1),(3,1): recall 1/4).
    dot = square((10, 10), 3, 3, 1)
    assert contour_accuracy(gt, dot) == pytest.approx(2 * 0.75 * 0.25 / (0.75 + 0.25))
    assert region_similarity(gt, dot) == pytest.approx(1 / 16)
    # Far apart: nothing matches.
    assert contour_accuracy(gt, square((10, 10), 7, 7, 2)) == 0.0


def test_contour_accuracy_empty_cases() -> None:
    empty = np.zeros((10, 10), dtype=bool)
    gt = square((10, 10), 2, 2, 4)
    assert contour_accuracy(empty, empty) == 1.0
    assert contour_accuracy(gt, empty) == 0.0
    assert contour_accuracy(empty, gt) == 0.0
    # The official quirk: a full-frame mask has an empty boundary, so it scores F = 1 against an empty mask.
    assert contour_accuracy(np.ones((10, 10), dtype=bool), empty) == 1.0


def test_contour_accuracy_with_void() -> None:
    # Void pixels are cleared from both masks before the boundaries are drawn.
    gt = square((10, 10), 2, 2, 4)
    pred = square((10, 10), 2, 2, 4)
    pred[7:9, 7:9] = True  # a far blob ...
    void = square((10, 10), 6, 6, 4)  # ... inside a void region
    assert contour_accuracy(gt, pred) < 1.0
    assert contour_accuracy(gt, pred, void) == 1.0


@pytest.mark.parametrize("shape", [(1, 7), (9, 1), (13, 17), (60, 80), (120, 200), (200, 300)])
def test_contour_accuracy_matches_brute_force(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    values = []
    for _ in range(25):
        gt, pred = random_blobs(rng, shape), random_blobs(rng, shape)
        if rng.random() < 0.3:  # a nearby prediction, so that F takes values between 0 and 1
            pred = np.roll(gt, tuple(rng.integers(-3, 4, 2)), axis=(0, 1)) ^ (rng.random(shape) < 0.02)
        assert np.array_equal(boundary_map(gt), reference_boundary(gt))
        f = contour_accuracy(gt, pred)
        assert f == pytest.approx(reference_f(gt, pred), abs=1e-12)
        values.append(f)
    if min(shape) > 1:
        assert any(0 < v < 1 for v in values)


def test_j_and_f() -> None:
    gt = square((10, 10), 2, 2, 4)
    j, f, jf = j_and_f(gt, square((10, 10), 2, 3, 4))
    assert (j, f, jf) == pytest.approx((0.6, 1.0, 0.8))


# --- A2D / JHMDB summary -------------------------------------------------------------------------------------


def test_iou_summary_by_hand() -> None:
    # IoUs: 0.9, 0.5, 0.75, 1 (empty union), 0.0
    summary = iou_summary([9, 5, 3, 0, 0], [10, 10, 4, 0, 6])
    assert summary == pytest.approx(
        {
            "P@0.5": 3 / 5,  # strictly above: 0.5 itself does not count
            "P@0.6": 3 / 5,
            "P@0.7": 3 / 5,
            "P@0.8": 2 / 5,
            "P@0.9": 1 / 5,
            "overall_iou": 17 / 30,
            "mean_iou": (0.9 + 0.5 + 0.75 + 1.0 + 0.0) / 5,
        }
    )


def test_iou_summary_from_masks() -> None:
    gt = square((10, 10), 2, 2, 4)
    pairs = [mask_intersection_union(gt, square((10, 10), 2, c, 4)) for c in (2, 3, 4)]
    assert pairs == [(16, 16), (12, 20), (8, 24)]
    summary = iou_summary(*zip(*pairs))
    assert summary["overall_iou"] == pytest.approx(36 / 60)
    assert summary["mean_iou"] == pytest.approx((1 + 0.6 + 1 / 3) / 3)
    assert summary["P@0.5"] == pytest.approx(2 / 3)


def test_mask_intersection_union_leaves_out_void_pixels() -> None:
    gt = square((10, 10), 2, 2, 4)  # 16 pixels
    pred = square((10, 10), 2, 2, 5)  # 25 pixels: 9 outside the object
    void = square((10, 10), 6, 2, 5)  # covers the prediction's bottom row: 5 pixels outside the object
    assert mask_intersection_union(gt, pred) == (16, 25)
    assert mask_intersection_union(gt, pred, void) == (16, 20)
    assert region_similarity(gt, pred, void) == pytest.approx(16 / 20)


def test_iou_summary_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        iou_summary([], [])
    with pytest.raises(ValueError):
        iou_summary([1, 2], [1])
    with pytest.raises(ValueError):
        iou_summary([5], [4])


# --- boxes ---------------------------------------------------------------------------------------------------
