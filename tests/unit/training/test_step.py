"""One optimisation step on a tiny model with random inputs: it lowers the loss, trains only what should."""

import math
from dataclasses import replace

import pytest
import torch

from groprompt.config import LossConfig, ModelConfig
from groprompt.data.batches import ClipBatch
from groprompt.models.frozen import FrozenEncoders
from groprompt.models.groprompt import build_model
from groprompt.models.sam import FrozenSam
from groprompt.models.text import FrozenTextEncoder
from groprompt.training.step import compute_losses, nearest_members, to_prompt_coordinates

MODEL = ModelConfig(sam="tiny", d_model=32, decoder_layers=2, num_heads=2, ffn_dim=64, num_queries=6)


@pytest.fixture(scope="module")
def frozen() -> FrozenEncoders:
    return FrozenEncoders(sam=FrozenSam.from_name("tiny", seed=0), text=FrozenTextEncoder())


def random_batch(frozen: FrozenEncoders, size: int = 3, frames: int = 3) -> ClipBatch:
    generator = torch.Generator().manual_seed(1)
    frames_rgb = torch.randint(0, 255, (size * frames, 64, 96, 3), dtype=torch.uint8, generator=generator)
    embeddings = frozen.sam.encode(frames_rgb).reshape(size, frames, frozen.sam.embed_dim, frozen.sam.embed_grid, frozen.sam.embed_grid)
    centre = torch.rand(size, frames, 2, generator=generator) * 0.5 + 0.25
    extent = torch.rand(size, frames, 2, generator=generator) * 0.3 + 0.1
    negative_valid = torch.ones(size, frames, dtype=torch.bool)
    negative_valid[-1] = False  # the last sample's negative sentence comes from another video
    same_video = torch.ones(size, dtype=torch.bool)
    same_video[-1] = False
    h, w = frozen.sam.input_size((64, 96))
    return ClipBatch(
        embeddings=embeddings,
        sentences=["the red circle", "the square moving up", "the small star"][:size],
        negatives=["the blue square", "the square moving left", "a dog"][:size],
        boxes=torch.cat([centre, extent], -1),
        valid=torch.ones(size, frames, dtype=torch.bool),
        negative_boxes=torch.cat([1 - centre, extent], -1),
        negative_valid=negative_valid,
        same_video=same_video,
        input_sizes=torch.tensor([[h, w]] * size),
    )


def test_one_step_lowers_the_loss_and_trains_only_the_generator(frozen: FrozenEncoders) -> None:
    torch.manual_seed(0)
    model = build_model(MODEL, frozen)
    batch = random_batch(frozen)
    frozen_before = {name: p.clone() for name, p in list(frozen.sam.named_parameters()) + list(frozen.text.named_parameters())}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    terms = compute_losses(model, frozen, batch, LossConfig())
    assert set(terms) == {"l1", "giou", "conf", "select", "aux", "textcon", "modalcon", "total"}
    assert all(torch.isfinite(v) for v in terms.values())
    optimizer.zero_grad()
    terms["total"].backward()
    assert all(p.grad is None for p in frozen.sam.parameters())
    assert all(p.grad is None for p in frozen.text.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.proposal.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.modalcon.parameters())
    optimizer.step()
    after = compute_losses(model, frozen, batch, LossConfig())
    assert after["total"].item() < terms["total"].item()
    for name, p in list(frozen.sam.named_parameters()) + list(frozen.text.named_parameters()):
        assert torch.equal(p, frozen_before[name]), name


def plain_giou(a: list[float], b: list[float]) -> float:
    """Generalised IoU of two cxcywh boxes, in plain Python."""
    ax1, ay1, ax2, ay2 = a[0] - a[2] / 2, a[1] - a[3] / 2, a[0] + a[2] / 2, a[1] + a[3] / 2
    bx1, by1, bx2, by2 = b[0] - b[2] / 2, b[1] - b[3] / 2, b[0] + b[2] / 2, b[1] + b[3] / 2
    inter = max(0.0, min(ax2, bx2) - max(ax1, bx1)) * max(0.0, min(ay2, by2) - max(ay1, by1))
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    hull = (max(ax2, bx2) - min(ax1, bx1)) * (max(ay2, by2) - min(ay1, by1))
    return inter / union - (hull - union) / hull


def test_plain_giou_by_hand() -> None:
    # [0, 0, 2, 2] and [1, 1, 3, 3]: intersection 1, union 4 + 4 - 1 = 7, hull 3 x 3 = 9: 1/7 - 2/9
    assert plain_giou([1, 1, 2, 2], [2, 2, 2, 2]) == pytest.approx(1 / 7 - 2 / 9)


def test_box_terms_and_total_against_a_plain_reference_with_contrastive_terms_off(frozen: FrozenEncoders) -> None:
    """L1 and GIoU of the final level's top-confidence query per frame, summed over frames, averaged over the 2B rows
    (sentences, then their partners) with a box: the last partner has none, so 5 of the 6 rows count."""
    torch.manual_seed(0)
    model = build_model(MODEL, frozen).eval()
    batch = random_batch(frozen)
    config = LossConfig(textcon=False, modalcon=False)
    calls = []
    run = model.proposal.run

    def recorded_run(*args: object, **kwargs: object) -> object:  # the generator's outputs that the losses read
        calls.append((args, run(*args, **kwargs)))
        return calls[-1][1]

    model.proposal.run = recorded_run
    terms = compute_losses(model, frozen, batch, config)
    assert "textcon" not in terms and "modalcon" not in terms
    [(args, (outputs, _))] = calls
    assert args[3] == batch.sentences + batch.negatives
    targets = torch.cat([batch.boxes, batch.negative_boxes]).tolist()
    valid = torch.cat([batch.valid, batch.negative_valid]).tolist()
    l1_rows, giou_rows = [], []
    for row in range(len(targets)):
        if not any(valid[row]):
            continue
        l1_sum = giou_sum = 0.0
        for t, output in enumerate(outputs):
            if not valid[row][t]:
                continue
            logits = output.logits[-1, row].tolist()
            box = output.boxes[-1, row, max(range(len(logits)), key=logits.__getitem__)].tolist()
            l1_sum += sum(abs(p - q) for p, q in zip(box, targets[row][t]))
            giou_sum += 1 - plain_giou(box, targets[row][t])
        l1_rows.append(l1_sum)
        giou_rows.append(giou_sum)
    assert len(l1_rows) == 5
    assert terms["l1"].item() == pytest.approx(sum(l1_rows) / 5, rel=1e-5)
    assert terms["giou"].item() == pytest.approx(sum(giou_rows) / 5, rel=1e-5)
    # eq. 4 without the contrastive terms, paper weights lambda_r = 5, lambda_g = 2, the others 1
    expected_total = 5 * terms["l1"] + 2 * terms["giou"] + terms["conf"] + terms["select"] + terms["aux"]
    assert terms["total"].item() == pytest.approx(expected_total.item(), rel=1e-6)


def test_predict_boxes_are_the_most_confident_queries_with_their_sigmoid_scores(frozen: FrozenEncoders) -> None:
    model = build_model(MODEL, frozen).eval()
    batch = random_batch(frozen)
    boxes, scores = model.predict_boxes(frozen, batch.embeddings, batch.sentences)
    assert boxes.shape == (3, 3, 4) and scores.shape == (3, 3)
    with torch.no_grad():
        outputs, _ = model.proposal.run(frozen, batch.embeddings, None, batch.sentences)
    for t, output in enumerate(outputs):
        for row in range(3):
            logits = output.logits[-1, row].tolist()
            best = max(range(len(logits)), key=logits.__getitem__)
            assert scores[row, t].item() == pytest.approx(1 / (1 + math.exp(-logits[best])), rel=1e-5)
            assert boxes[row, t].tolist() == pytest.approx(output.boxes[-1, row, best].tolist())


def test_prompt_coordinates() -> None:
    boxes = torch.tensor([[[0.5, 0.5, 0.5, 0.5]]])
    assert to_prompt_coordinates(boxes, torch.tensor([[100, 200]])).tolist() == [[[50.0, 25.0, 150.0, 75.0]]]


def test_a_partner_whose_object_is_absent_from_the_clip_still_makes_a_contrastive_pair(frozen: FrozenEncoders) -> None:
    """S_i's object is in every frame; S_j names another object of the same video that is in none of them. S_i is
    the anchor of both terms (S_j has no ground truth, so it is no anchor); a plain reference of eq. 2 and 3."""
    torch.manual_seed(0)
    model = build_model(MODEL, frozen).eval()
    batch = random_batch(frozen, size=1)
    batch.negative_valid[:] = False
    batch.same_video[:] = True
    terms = compute_losses(model, frozen, batch, LossConfig())

    with torch.no_grad():
        clips = torch.cat([batch.embeddings, batch.embeddings])
        outputs, sentence = model.proposal.run(frozen, clips, None, [batch.sentences[0], batch.negatives[0]])
        predicted = torch.stack([output.top_boxes() for output in outputs], dim=1)  # (2, T, 4): S_i, S_j
        h, w = batch.input_sizes[0].tolist()
        scale = torch.tensor([w, h, w, h], dtype=torch.float32)

        def prompt(boxes: torch.Tensor) -> torch.Tensor:  # (T, 4) cxcywh -> (T, 2 * C) prompt-encoder embeddings
            xyxy = torch.cat([boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2], -1) * scale
            return frozen.sam.embed_boxes(xyxy).flatten(1)

        anchor, positive, negative = prompt(predicted[0]), prompt(batch.boxes[0]), prompt(predicted[1])
        textcon = sum(max(0.0, float((a - p).norm() - (a - n).norm())) for a, p, n in zip(anchor, positive, negative))
        prompts = torch.stack([prompt(predicted[0]), prompt(predicted[1])]).unflatten(-1, (2, -1))
        video = model.modalcon(prompts, clips, frozen.sam.dense_pe())[0]
        modalcon = max(0.0, float((video - sentence[0]).norm() - (video - sentence[1]).norm()))
    assert terms["textcon"].item() == pytest.approx(textcon, rel=1e-4, abs=1e-6)
    assert terms["modalcon"].item() == pytest.approx(modalcon, rel=1e-4, abs=1e-6)
    assert textcon > 0 or modalcon > 0  # the pair is not trivially satisfied: dropping it would change the loss


def test_set_mode_trains_on_each_object_of_a_sentence_about_several(frozen: FrozenEncoders) -> None:
    torch.manual_seed(0)
    model = build_model(replace(MODEL, multi_object=True), frozen)
    assert model.multi_object
    single = random_batch(frozen)
    size, frames = single.boxes.shape[:2]
    second = single.boxes.clone()
    second[..., :2] = 1 - second[..., :2]  # another object, mirrored
    members = torch.stack([single.boxes, second], dim=2)  # (B, T, 2, 4)
    members_valid = torch.ones(size, frames, 2, dtype=torch.bool)
    members_valid[1:, :, 1] = False  # rows 1 and 2 name one object (padding), row 0 two
    batch = replace(
        single,
        members=members,
        members_valid=members_valid,
        negative_members=single.negative_boxes[:, :, None].expand(-1, -1, 2, -1).clone(),
        negative_members_valid=torch.stack([single.negative_valid, torch.zeros_like(single.negative_valid)], dim=2),
        annotated=torch.ones(size, frames, dtype=torch.bool),
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    terms = compute_losses(model, frozen, batch, LossConfig())
    assert set(terms) == {"l1", "giou", "conf", "select", "aux", "textcon", "modalcon", "total"}
    optimizer.zero_grad()
    terms["total"].backward()
    optimizer.step()
    assert compute_losses(model, frozen, batch, LossConfig())["total"].item() < terms["total"].item()


def test_textcon_positive_in_set_mode_is_the_object_nearest_the_top_box() -> None:
    members = torch.tensor([[[[0.2, 0.2, 0.1, 0.1], [0.8, 0.8, 0.1, 0.1]], [[0.2, 0.2, 0.1, 0.1], [0.8, 0.8, 0.1, 0.1]]]])
    present = torch.tensor([[[True, True], [True, False]]])  # frame 1: only the first object is present
    top = torch.tensor([[[0.7, 0.7, 0.1, 0.1], [0.7, 0.7, 0.1, 0.1]]])
    assert torch.equal(nearest_members(top, members, present), torch.tensor([[[0.8, 0.8, 0.1, 0.1], [0.2, 0.2, 0.1, 0.1]]]))
