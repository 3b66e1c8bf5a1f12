"""Box conversions, IoU and generalized IoU against hand-computed values."""

import pytest
import torch

from groprompt import boxes


def test_cxcywh_to_xyxy_by_hand() -> None:
    # centre (30, 30), size 40 x 20 -> x from 10 to 50, y from 20 to 40
    assert boxes.cxcywh_to_xyxy(torch.tensor([[30.0, 30.0, 40.0, 20.0]])).tolist() == [[10.0, 20.0, 50.0, 40.0]]


def test_iou_and_giou_by_hand() -> None:
    a = torch.tensor([0.0, 0.0, 2.0, 2.0])
    b = torch.tensor([1.0, 1.0, 3.0, 3.0])
    # intersection 1, union 7, enclosing 9
    assert boxes.box_iou(a, b).item() == pytest.approx(1 / 7)
    assert boxes.generalized_box_iou(a, b).item() == pytest.approx(1 / 7 - 2 / 9)
    far = torch.tensor([4.0, 0.0, 6.0, 2.0])
    # disjoint: IoU 0, union 8, enclosing 12 -> GIoU = -4/12
    assert boxes.box_iou(a, far).item() == pytest.approx(0.0)
    assert boxes.generalized_box_iou(a, far).item() == pytest.approx(-1 / 3)
    assert boxes.generalized_box_iou(a, a).item() == pytest.approx(1.0)


def test_giou_is_differentiable() -> None:
    a = torch.tensor([[0.1, 0.1, 0.5, 0.5]], requires_grad=True)
    b = torch.tensor([[0.3, 0.3, 0.7, 0.8]])
    (1 - boxes.generalized_box_iou(a, b)).sum().backward()
    assert a.grad is not None and a.grad.abs().sum() > 0


def test_box_iou_in_pixels_by_hand_and_unchanged_by_scaling_an_axis() -> None:
    a = torch.tensor([[0.0, 0, 10, 10], [0, 0, 2, 2], [1, 1, 1, 1]], dtype=torch.float64)
    b = torch.tensor([[5.0, 0, 15, 10], [0, 0, 10, 10], [1, 1, 1, 1]], dtype=torch.float64)
    # intersection 50 / union 150; 4 / 100; two empty boxes: union 0 -> IoU 0
    assert boxes.box_iou(a, b).tolist() == pytest.approx([50 / 150, 4 / 100, 0.0])
    scale = torch.tensor([1 / 854, 1 / 480, 1 / 854, 1 / 480], dtype=torch.float64)  # frame pixels -> normalised
    assert boxes.box_iou(a * scale, b * scale).tolist() == pytest.approx([50 / 150, 4 / 100, 0.0])
