"""One optimisation step on a tiny model with random inputs: it lowers the loss, trains only what should."""

import math

import pytest
import torch

from groprompt.config import LossConfig, ModelConfig
from groprompt.data.clips import ClipBatch
from groprompt.engine import compute_losses, predict_boxes, to_prompt_coordinates
from groprompt.models.frozen import FrozenEncoders
from groprompt.models.groprompt import build_model
from groprompt.models.sam import FrozenSam
from groprompt.models.text import FrozenTextEncoder

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
    h, w = frozen.sam.input_size((64, 96))
    return ClipBatch(
        embeddings=embeddings,
        sentences=["the red circle", "the square moving up", "the small star"][:size],
        negatives=["the blue square", "the square moving left", "a dog"][:size],
        boxes=torch.cat([centre, extent], -1),
        valid=torch.ones(size, frames, dtype=torch.bool),
        negative_boxes=torch.cat([1 - centre, extent], -1),
        negative_valid=negative_valid,
        input_sizes=torch.tensor([[h, w]] * size),
    )


def test_one_step_lowers_the_loss_and_trains_only_the_generator(frozen: FrozenEncoders) -> None:
    torch.manual_seed(0)
    model = build_model(MODEL, frozen)
    batch = random_batch(frozen)
    frozen_before = {name: p.clone() for name, p in list(frozen.sam.named_parameters()) + list(frozen.text.named_parameters())}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    terms = compute_losses(model.proposal, model.modalcon, frozen, batch, LossConfig())
    assert set(terms) == {"l1", "giou", "conf", "select", "aux", "textcon", "modalcon", "total"}
    assert all(torch.isfinite(v) for v in terms.values())
    optimizer.zero_grad()
    terms["total"].backward()
    assert all(p.grad is None for p in frozen.sam.parameters())
    assert all(p.grad is None for p in frozen.text.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.proposal.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.modalcon.parameters())
    optimizer.step()
    after = compute_losses(model.proposal, model.modalcon, frozen, batch, LossConfig())
    assert after["total"].item() < terms["total"].item()
    for name, p in list(frozen.sam.named_parameters()) + list(frozen.text.named_parameters()):
        assert torch.equal(p, frozen_before[name]), name


def test_contrastive_terms_switch_off(frozen: FrozenEncoders) -> None:
    model = build_model(MODEL, frozen)
    terms = compute_losses(model.proposal, model.modalcon, frozen, random_batch(frozen), LossConfig(textcon=False, modalcon=False))
    assert "textcon" not in terms and "modalcon" not in terms


def test_predict_boxes_are_the_most_confident_queries_with_their_sigmoid_scores(frozen: FrozenEncoders) -> None:
    model = build_model(MODEL, frozen).eval()
    batch = random_batch(frozen)
    boxes, scores = predict_boxes(model.proposal, frozen, batch.embeddings, batch.sentences)
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
