"""Each loss against values computed by hand on small tensors."""

import itertools
import math

import pytest
import torch

from groprompt.config import LossConfig
from groprompt.losses import box_loss_terms, modalcon_loss, selection_loss, set_loss_terms, textcon_loss, token_box_loss, total_loss
from groprompt.models.generator import FrameOutput
from groprompt.models.proposal import grid_centres


def test_textcon_by_hand() -> None:
    # one sample, two frames, 2-d "embeddings"
    anchor = torch.tensor([[[0.0, 0.0], [0.0, 0.0]]])
    positive = torch.tensor([[[3.0, 4.0], [1.0, 0.0]]])  # d_p = 5, 1
    negative = torch.tensor([[[0.0, 2.0], [0.0, 3.0]]])  # d_n = 2, 3
    valid, rows = torch.tensor([[True, True]]), torch.tensor([True])
    # frame 1: max(0, 5 - 2) = 3; frame 2: max(0, 1 - 3) = 0
    assert textcon_loss(anchor, positive, negative, valid, rows).item() == pytest.approx(3.0)
    # with margin 2.5: (5 - 2 + 2.5) + (1 - 3 + 2.5)
    assert textcon_loss(anchor, positive, negative, valid, rows, margin=2.5).item() == pytest.approx(5.5 + 0.5)
    assert textcon_loss(anchor, positive, negative, torch.tensor([[False, True]]), rows).item() == pytest.approx(0.0)


def test_textcon_averages_over_the_rows_with_a_partner_and_a_box() -> None:
    # row 0 as above (loss 3); row 1 would lose 5 - 0 = 5 per frame but has no partner: it must not count,
    # nor dilute the mean: 3, not (3 + 0) / 2
    anchor = torch.zeros(2, 2, 2)
    positive = torch.tensor([[[3.0, 4.0], [1.0, 0.0]], [[3.0, 4.0], [3.0, 4.0]]])
    negative = torch.tensor([[[0.0, 2.0], [0.0, 3.0]], [[0.0, 0.0], [0.0, 0.0]]])
    valid = torch.ones(2, 2, dtype=torch.bool)
    assert textcon_loss(anchor, positive, negative, valid, torch.tensor([True, False])).item() == pytest.approx(3.0)
    assert textcon_loss(anchor, positive, negative, valid, torch.tensor([True, True])).item() == pytest.approx((3.0 + 10.0) / 2)
    assert textcon_loss(anchor, positive, negative, valid, torch.tensor([False, False])).item() == 0.0


def test_modalcon_by_hand() -> None:
    video = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    sentence = torch.tensor([[0.0, 1.0], [0.0, 1.0]])  # d_p = sqrt 2, 0
    other = torch.tensor([[1.0, 1.0], [1.0, 1.0]])  # d_n = 1, 1
    both = torch.tensor([True, True])
    assert modalcon_loss(video, sentence, other, both).item() == pytest.approx(((math.sqrt(2) - 1) + 0.0) / 2)
    assert modalcon_loss(video, sentence, other, torch.tensor([True, False])).item() == pytest.approx(math.sqrt(2) - 1)


def two_level_output(level_boxes: list[list[list[float]]], level_logits: list[list[float]], grid: int = 2) -> FrameOutput:
    """A frame's output for one sample: (levels, 1, Q, 4) boxes and (levels, 1, Q) confidences; every token's own
    proposal is the box (0.5, 0.5, 0.5, 0.5)."""
    return FrameOutput(
        boxes=torch.tensor([[boxes] for boxes in level_boxes]),
        logits=torch.tensor([[logits] for logits in level_logits]),
        token_logits=torch.zeros(1, grid * grid),
        token_centres=grid_centres(grid),
        token_boxes=torch.tensor([0.5, 0.5, 0.5, 0.5]).repeat(1, grid * grid, 1),
    )


def test_box_terms_use_the_top_confidence_proposal_of_the_final_level() -> None:
    target = torch.tensor([[[0.5, 0.5, 0.5, 0.5]]])  # (B=1, T=1, 4) cxcywh -> xyxy 0.25..0.75
    proposals = [[0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.25, 0.25]]
    # level 0 (the selected tokens' boxes): query 1 on top; final level: query 1 on top, query 0 matches best
    output = two_level_output([proposals, proposals], [[0.0, 3.0], [0.0, 2.0]])
    terms = box_loss_terms([output], target, torch.tensor([[True]]), LossConfig())
    # top box xyxy 0.375..0.625: L1 = 0.25 + 0.25; IoU = 0.0625 / 0.25; enclosing = the target -> GIoU = IoU
    assert terms["l1"].item() == pytest.approx(0.5)
    assert terms["giou"].item() == pytest.approx(1 - 0.25)
    # confidence: cross-entropy with the best-matching query (0) as the positive
    assert terms["conf"].item() == pytest.approx(-math.log(1 / (1 + math.exp(2.0))))
    # deep supervision of level 0: 5 * 0.5 + 2 * 0.75 (level 0 has no confidence loss); the tokens' own proposals
    # all equal the target: no dense term
    assert terms["aux"].item() == pytest.approx(4.0)
    # selection: 2x2 grid centres at 0.25/0.75, all on the target box's border -> all positive, logits 0; the softmax
    # over the 4 tokens onto all 4 gives log 4, the balanced BCE log 2
    assert terms["select"].item() == pytest.approx(math.log(4))
    bce = box_loss_terms([output], target, torch.tensor([[True]]), LossConfig(selection="bce"))
    assert bce["select"].item() == pytest.approx(math.log(2))


def test_absent_frames_and_rows_without_a_box_do_not_count() -> None:
    target = torch.tensor([[[0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5]]] * 2)  # 2 rows, 2 frames
    output = FrameOutput(
        boxes=torch.tensor([[[[0.5, 0.5, 0.5, 0.5]]] * 2, [[[0.5, 0.5, 0.25, 0.25]]] * 2]),  # 2 levels, 2 rows, 1 query
        logits=torch.zeros(2, 2, 1),
        token_logits=torch.zeros(2, 4),
        token_centres=grid_centres(2),
        token_boxes=torch.tensor([0.5, 0.5, 0.5, 0.5]).repeat(2, 4, 1),
    )
    valid = torch.tensor([[True, False], [False, False]])  # row 1: a sentence with no box in the clip
    terms = box_loss_terms([output, output], target, valid, LossConfig())
    assert terms["l1"].item() == pytest.approx(0.5)  # the final level is off by 0.5 on frame 1 of row 0; not halved by row 1
    assert terms["aux"].item() == pytest.approx(0.0, abs=1e-5)  # level 0 is exact (GIoU in float32)


def test_selection_loss_positives_inside_the_box() -> None:
    centres = grid_centres(2)  # (0.25,0.25) (0.75,0.25) (0.25,0.75) (0.75,0.75)
    target = torch.tensor([[0.25, 0.25, 0.2, 0.2]])  # only the first centre is inside
    logits = torch.tensor([[10.0, -10.0, -10.0, -10.0]])
    assert selection_loss(logits, centres, target).item() == pytest.approx(2 * math.log1p(math.exp(-10)), rel=1e-2)  # float32
    wrong = -logits
    assert selection_loss(wrong, centres, target).item() > 19


def test_total_weights_and_switches() -> None:
    terms = {name: torch.tensor(1.0) for name in ("l1", "giou", "conf", "select", "aux", "textcon", "modalcon")}
    config = LossConfig()
    assert total_loss(terms, config).item() == pytest.approx(5 + 2 + 1 + 1 + 1 + 0.01 + 0.1)
    off = LossConfig(textcon=False, modalcon=False, lambda_aux=0.0)
    assert total_loss(terms, off).item() == pytest.approx(9.0)


def test_token_box_loss_averages_over_the_tokens_inside_the_target() -> None:
    target = torch.tensor([[0.25, 0.25, 0.5, 0.5]])  # xyxy 0..0.5: of the 2x2 grid's centres only (0.25, 0.25) is inside
    token_boxes = torch.tensor([[[0.25, 0.25, 0.25, 0.25], [0.9, 0.1, 0.1, 0.1], [0.1, 0.9, 0.1, 0.1], [0.9, 0.9, 0.2, 0.2]]])
    # the inside token, xyxy 0.125..0.375: L1 = 0.25 + 0.25; IoU = 0.0625 / 0.25, enclosing = the target -> GIoU = IoU
    loss = token_box_loss(token_boxes, grid_centres(2), target, LossConfig())
    assert loss.tolist() == pytest.approx([5 * 0.5 + 2 * (1 - 0.25)])
    assert token_box_loss(torch.zeros(1, 0, 4), torch.zeros(0, 2), target, LossConfig()).tolist() == [0.0]  # no tokens


def test_softmax_selection_loss_by_hand() -> None:
    centres = torch.tensor([[0.1, 0.5], [0.5, 0.5], [0.9, 0.5]])
    logits = torch.tensor([[0.0, 1.0, 2.0], [0.0, 1.0, 2.0]])
    # row 0: the box (x 0.05-0.6) holds tokens 0 and 1 -> targets 1/2, 1/2; row 1: a box between the centres holds
    # none -> the token nearest to its centre (0.8, 0.5), token 2
    targets = torch.tensor([[0.325, 0.5, 0.55, 0.2], [0.8, 0.5, 0.1, 0.1]])
    log_sum = math.log(math.exp(0.0) + math.exp(1.0) + math.exp(2.0))
    expected = [-(0.5 * (0.0 - log_sum) + 0.5 * (1.0 - log_sum)), -(2.0 - log_sum)]
    assert selection_loss(logits, centres, targets, "softmax").tolist() == pytest.approx(expected)
    assert selection_loss(torch.zeros(2, 0), torch.zeros(0, 2), targets, "softmax").tolist() == [0.0, 0.0]  # no token scores


def _plain_giou(a: list[float], b: list[float]) -> float:
    """GIoU of two cxcywh boxes, written out."""
    ax1, ay1, ax2, ay2 = a[0] - a[2] / 2, a[1] - a[3] / 2, a[0] + a[2] / 2, a[1] + a[3] / 2
    bx1, by1, bx2, by2 = b[0] - b[2] / 2, b[1] - b[3] / 2, b[0] + b[2] / 2, b[1] + b[3] / 2
    inter = max(0.0, min(ax2, bx2) - max(ax1, bx1)) * max(0.0, min(ay2, by2) - max(ay1, by1))
    union = a[2] * a[3] + b[2] * b[3] - inter
    enclosing = (max(ax2, bx2) - min(ax1, bx1)) * (max(ay2, by2) - min(ay1, by1))
    return inter / union - (enclosing - union) / enclosing


def _plain_focal(logit: float, positive: bool) -> float:
    p = 1 / (1 + math.exp(-logit))
    return 0.25 * -math.log(p) * (1 - p) ** 2 if positive else 0.75 * -math.log(1 - p) * p**2


def _best_assignment(boxes: list[list[float]], scores: list[float], targets: list[list[float]]) -> dict[int, int]:
    """query -> target of least total 5 L1 + 2 (1 - GIoU) - score, by trying every assignment."""

    def cost(q: int, m: int) -> float:
        return 5 * sum(abs(x - y) for x, y in zip(boxes[q], targets[m])) + 2 * (1 - _plain_giou(boxes[q], targets[m])) - scores[q]

    best = min(itertools.permutations(range(len(boxes)), len(targets)), key=lambda chosen: sum(cost(q, m) for m, q in enumerate(chosen)))
    return {q: m for m, q in enumerate(best)}


def test_set_terms_match_every_object_to_its_own_query() -> None:
    # one sentence about two objects, one frame, 3 queries, 2 levels, a 2x2 token grid
    targets = [[0.25, 0.25, 0.3, 0.3], [0.75, 0.75, 0.3, 0.3]]
    level0 = [[0.7, 0.7, 0.3, 0.3], [0.5, 0.5, 0.2, 0.2], [0.3, 0.2, 0.3, 0.3]]
    final = [[0.3, 0.3, 0.3, 0.3], [0.74, 0.7, 0.35, 0.3], [0.5, 0.5, 0.5, 0.5]]
    logits = [[0.0, 0.0, 0.0], [1.0, 0.5, 2.0]]
    token_boxes = [[0.25, 0.25, 0.2, 0.2], [0.75, 0.25, 0.2, 0.2], [0.25, 0.75, 0.2, 0.2], [0.7, 0.7, 0.3, 0.3]]
    output = FrameOutput(
        boxes=torch.tensor([[level0], [final]]),
        logits=torch.tensor([[logits[0]], [logits[1]]]),
        token_logits=torch.tensor([[0.0, 1.0, 2.0, 3.0]]),
        token_centres=grid_centres(2),
        token_boxes=torch.tensor([token_boxes]),
    )
    members, present = torch.tensor([[targets]]), torch.tensor([[[True, True]]])  # (R=1, T=1, M=2, 4), (1, 1, 2)
    terms = set_loss_terms([output], members, present, torch.tensor([[True]]), LossConfig())

    probabilities = [1 / (1 + math.exp(-x)) for x in logits[1]]
    match = _best_assignment(final, probabilities, targets)
    l1 = sum(sum(abs(x - y) for x, y in zip(final[q], targets[m])) for q, m in match.items()) / 2
    giou = sum(1 - _plain_giou(final[q], targets[m]) for q, m in match.items()) / 2
    conf = sum(_plain_focal(logits[1][q], q in match) for q in range(3)) / 2
    assert terms["l1"].item() == pytest.approx(l1, rel=1e-5)
    assert terms["giou"].item() == pytest.approx(giou, rel=1e-5)
    assert terms["conf"].item() == pytest.approx(conf, rel=1e-5)
    # level 0: matched on boxes alone, no confidence term; the dense term: token 0 (centre 0.25, 0.25) lies in
    # object 0's box and token 3 (0.75, 0.75) in object 1's, each against its own object
    match0 = _best_assignment(level0, [0.0] * 3, targets)
    level0_loss = (
        sum(
            5 * sum(abs(x - y) for x, y in zip(level0[q], targets[m])) + 2 * (1 - _plain_giou(level0[q], targets[m]))
            for q, m in match0.items()
        )
        / 2
    )
    dense = (
        sum(
            5 * sum(abs(x - y) for x, y in zip(token_boxes[n], targets[m])) + 2 * (1 - _plain_giou(token_boxes[n], targets[m]))
            for n, m in ((0, 0), (3, 1))
        )
        / 2
    )
    assert terms["aux"].item() == pytest.approx(level0_loss + dense, rel=1e-5)
    # selection: the softmax onto tokens 0 and 3, half each
    log_sum = math.log(sum(math.exp(x) for x in (0.0, 1.0, 2.0, 3.0)))
    assert terms["select"].item() == pytest.approx(-(0.5 * (0.0 - log_sum) + 0.5 * (3.0 - log_sum)), rel=1e-5)


def test_set_confidence_learns_no_object_where_a_scored_frame_has_none() -> None:
    # two rows: row 0 has its object; row 1's object is absent from the (scored) frame: every query is a negative
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.2], [0.2, 0.2, 0.1, 0.1]])
    output = FrameOutput(
        boxes=boxes[None, None].expand(2, 2, 2, 4),
        logits=torch.tensor([[0.0, 0.0], [0.0, 0.0]])[:, None].expand(2, 2, 2) + torch.tensor([1.0, -1.0]),
        token_logits=torch.zeros(2, 4),
        token_centres=grid_centres(2),
        token_boxes=torch.full((2, 4, 4), 0.5),
    )
    members = torch.tensor([[[0.5, 0.5, 0.2, 0.2]], [[0.5, 0.5, 0.2, 0.2]]])[:, None]  # (R=2, T=1, M=1, 4)
    present = torch.tensor([[[True]], [[False]]])
    terms = set_loss_terms([output], members, present, torch.tensor([[True], [True]]), LossConfig())
    row0 = _plain_focal(1.0, True) + _plain_focal(-1.0, False)
    row1 = _plain_focal(1.0, False) + _plain_focal(-1.0, False)
    assert terms["conf"].item() == pytest.approx((row0 + row1) / 2, rel=1e-5)
    assert terms["l1"].item() == pytest.approx(0.0, abs=1e-6)  # row 0's box is exact; row 1 has no box to count
    unscored = set_loss_terms([output], members, present, torch.tensor([[True], [False]]), LossConfig())
    assert unscored["conf"].item() == pytest.approx(row0, rel=1e-5)  # an unannotated frame says nothing
