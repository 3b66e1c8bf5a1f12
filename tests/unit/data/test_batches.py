"""Training batches: moving a ``ClipBatch`` to a device, and how an epoch's clips fill its steps."""

from __future__ import annotations

import pytest
import torch

from groprompt.data.batches import ClipBatch, batch_sizes


def batch(pixels: bool) -> ClipBatch:
    b, t = 2, 3
    return ClipBatch(
        embeddings=torch.randn(b, t, 8, 4, 4),
        sentences=["a red square", "a blue circle"],
        negatives=["a blue circle", "a red square"],
        boxes=torch.rand(b, t, 4),
        valid=torch.ones(b, t, dtype=torch.bool),
        negative_boxes=torch.rand(b, t, 4),
        negative_valid=torch.zeros(b, t, dtype=torch.bool),
        same_video=torch.tensor([True, False]),
        input_sizes=torch.tensor([[256, 192], [192, 256]]),
        pixels=torch.zeros(b, t, 3, 16, 16, dtype=torch.uint8) if pixels else None,
    )


TENSORS = ("embeddings", "boxes", "valid", "negative_boxes", "negative_valid", "same_video", "input_sizes")


def test_a_batch_moves_every_tensor_and_keeps_its_sentences() -> None:
    source = batch(pixels=True)
    moved = source.to(torch.device("meta"))
    for name in (*TENSORS, "pixels"):
        before, after = getattr(source, name), getattr(moved, name)
        assert after.device.type == "meta", name
        assert (after.shape, after.dtype) == (before.shape, before.dtype), name
        assert before.device.type == "cpu", name  # the source batch stays where it was
    assert moved.sentences == ["a red square", "a blue circle"] and moved.negatives == ["a blue circle", "a red square"]


def test_a_batch_without_pixels_moves_with_none_and_keeps_its_values() -> None:
    source = batch(pixels=False)
    moved = source.to("cpu")
    assert moved.pixels is None
    for name in TENSORS:
        assert torch.equal(getattr(moved, name), getattr(source, name)), name


@pytest.mark.parametrize(
    ("count", "batch_size", "steps", "sizes"),
    [(10, 4, 3, [4, 4, 2]), (9, 4, 3, [4, 4, 1]), (8, 4, 3, [4, 3, 1]), (3, 1, 3, [1, 1, 1]), (2, 1, 3, [1, 1, 1])],
)
def test_batch_sizes_fill_every_step(count: int, batch_size: int, steps: int, sizes: list[int]) -> None:
    assert batch_sizes(count, batch_size, steps) == sizes
