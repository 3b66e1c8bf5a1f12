"""Box conversions, IoU and generalized IoU against hand-computed values."""

import pytest
import torch

from groprompt import boxes


def test_conversions_round_trip() -> None:
    xyxy = torch.tensor([[10.0, 20.0, 50.0, 40.0]])
    cxcywh = boxes.xyxy_to_cxcywh(xyxy)
    assert cxcywh.tolist() == [[30.0, 30.0, 40.0, 20.0]]
    assert torch.equal(boxes.cxcywh_to_xyxy(cxcywh), xyxy)


def test_normalisation_round_trip() -> None:
    xyxy = torch.tensor([[10.0, 20.0, 50.0, 40.0]])
    normal = boxes.normalize_xyxy(xyxy, height=100, width=200)
    assert torch.allclose(normal, torch.tensor([[0.05, 0.2, 0.25, 0.4]]))
    assert torch.allclose(boxes.denormalize_xyxy(normal, 100, 200), xyxy)


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
