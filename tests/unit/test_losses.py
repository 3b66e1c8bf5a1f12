"""Each loss against values computed by hand on small tensors."""

import math

import pytest
import torch

from groprompt.config import LossConfig
from groprompt.losses import box_loss_terms, modalcon_loss, selection_loss, textcon_loss, total_loss
from groprompt.models.proposal import FrameOutput, grid_centres


def test_textcon_by_hand() -> None:
    # one sample, two frames, 2-d "embeddings"
    anchor = torch.tensor([[[0.0, 0.0], [0.0, 0.0]]])
    positive = torch.tensor([[[3.0, 4.0], [1.0, 0.0]]])  # d_p = 5, 1
    negative = torch.tensor([[[0.0, 2.0], [0.0, 3.0]]])  # d_n = 2, 3
    valid = torch.tensor([[True, True]])
    # frame 1: max(0, 5 - 2) = 3; frame 2: max(0, 1 - 3) = 0
    assert textcon_loss(anchor, positive, negative, valid).item() == pytest.approx(3.0)
    # with margin 2.5: (5 - 2 + 2.5) + (1 - 3 + 2.5)
    assert textcon_loss(anchor, positive, negative, valid, margin=2.5).item() == pytest.approx(5.5 + 0.5)
    assert textcon_loss(anchor, positive, negative, torch.tensor([[False, True]])).item() == pytest.approx(0.0)


def test_modalcon_by_hand() -> None:
    video = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    sentence = torch.tensor([[0.0, 1.0], [0.0, 1.0]])  # d_p = sqrt 2, 0
    other = torch.tensor([[1.0, 1.0], [1.0, 1.0]])  # d_n = 1, 1
    expected = ((math.sqrt(2) - 1) + 0.0) / 2
    assert modalcon_loss(video, sentence, other).item() == pytest.approx(expected)


def frame_output(boxes: list[list[float]], logits: list[float], token_logits: torch.Tensor, grid: int = 2) -> FrameOutput:
    return FrameOutput(
        boxes=torch.tensor([[boxes]]),  # (1 level, 1 sample, Q, 4)
        logits=torch.tensor([[logits]]),
        token_logits=token_logits,
        token_centres=grid_centres(grid),
    )


def test_box_terms_use_the_top_confidence_proposal() -> None:
    target = torch.tensor([[[0.5, 0.5, 0.5, 0.5]]])  # (B=1, T=1, 4) cxcywh -> xyxy 0.25..0.75
    proposals = [[0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.25, 0.25]]
    logits = [0.0, 2.0]  # query 1 is the top one, query 0 matches best
    output = frame_output(proposals, logits, torch.zeros(1, 4))
    terms = box_loss_terms([output], target, torch.tensor([[True]]), LossConfig(aux=False))
    # top box xyxy 0.375..0.625: L1 = 0.25 + 0.25; IoU = 0.0625 / 0.25; enclosing = the target -> GIoU = IoU
    assert terms["l1"].item() == pytest.approx(0.5)
    assert terms["giou"].item() == pytest.approx(1 - 0.25)
    # confidence: cross-entropy with the best-matching query (0) as the positive
    assert terms["conf"].item() == pytest.approx(-math.log(1 / (1 + math.exp(2.0))))
    # selection: 2x2 grid centres at 0.25/0.75, all on the target box's border -> all positive, logits 0
    assert terms["select"].item() == pytest.approx(math.log(2))


def test_absent_frames_and_levels() -> None:
    target = torch.tensor([[[0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5]]])
    output = FrameOutput(
        boxes=torch.tensor([[[[0.5, 0.5, 0.5, 0.5]]], [[[0.5, 0.5, 0.25, 0.25]]]]),  # 2 levels, 1 query
        logits=torch.zeros(2, 1, 1),
        token_logits=torch.zeros(1, 4),
        token_centres=grid_centres(2),
    )
    valid = torch.tensor([[True, False]])
    with_aux = box_loss_terms([output, output], target, valid, LossConfig(aux=True))
    last_only = box_loss_terms([output, output], target, valid, LossConfig(aux=False))
    assert with_aux["l1"].item() == pytest.approx(0.0 + 0.5)  # level 0 exact, level 1 off by 0.5; frame 2 absent
    assert last_only["l1"].item() == pytest.approx(0.5)


def test_selection_loss_positives_inside_the_box() -> None:
    centres = grid_centres(2)  # (0.25,0.25) (0.75,0.25) (0.25,0.75) (0.75,0.75)
    target = torch.tensor([[0.25, 0.25, 0.2, 0.2]])  # only the first centre is inside
    logits = torch.tensor([[10.0, -10.0, -10.0, -10.0]])
    assert selection_loss(logits, centres, target).item() == pytest.approx(2 * math.log1p(math.exp(-10)), rel=1e-2)  # float32
    wrong = -logits
    assert selection_loss(wrong, centres, target).item() > 19


def test_total_weights_and_switches() -> None:
    terms = {name: torch.tensor(1.0) for name in ("l1", "giou", "conf", "select", "textcon", "modalcon")}
    config = LossConfig()
    assert total_loss(terms, config).item() == pytest.approx(5 + 2 + 1 + 1 + 0.01 + 0.1)
    off = LossConfig(textcon=False, modalcon=False)
    assert total_loss(terms, off).item() == pytest.approx(9.0)
