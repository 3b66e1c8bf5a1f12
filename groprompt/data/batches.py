"""Training items collated into batches: the ClipBatch the training step reads, and how an epoch is cut into steps."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, fields

import numpy as np
import torch

from groprompt.data.clips import ClipItem


@dataclass
class ClipBatch:
    """B clips of T frames, each with a referring sentence S_i and a negative sentence S_j.

    Boxes are normalised cxcywh of the frame; ``*_valid`` is False where the object is absent (and
    everywhere for a negative sentence taken from another video). A sentence about several objects (a group target)
    has their union box in ``boxes`` and each object's own box in ``members`` (B, T, M, 4; one member for a sentence
    about one object, padded with invalid members to the batch's largest group): the set mode trains on those
    (``model.multi_object``). ``annotated`` (B, T) is False on frames without annotation, where an absent object
    says nothing. ``same_video`` (B,) is True where S_j names
    another object of the clip's own video (whether or not that object is in the clip): only such pairs are
    contrastive. ``input_sizes`` (B, 2) are the (h, w) of the frames inside SAM's input, to place boxes in its
    prompt coordinates.
    """

    embeddings: torch.Tensor  # (B, T, C, g, g)
    sentences: list[str]
    negatives: list[str]
    boxes: torch.Tensor  # (B, T, 4)
    valid: torch.Tensor  # (B, T)
    negative_boxes: torch.Tensor  # (B, T, 4)
    negative_valid: torch.Tensor  # (B, T)
    same_video: torch.Tensor  # (B,) bool
    input_sizes: torch.Tensor  # (B, 2)
    pixels: torch.Tensor | None = None  # (B, T, 3, S, S) uint8 frames, for a generator that reads pixels
    previous: torch.Tensor | None = None  # (B, C, g, g) the embedding of the frame before each clip (motion input)
    members: torch.Tensor | None = None  # (B, T, M, 4); None: every sentence is about one object (``boxes``)
    members_valid: torch.Tensor | None = None  # (B, T, M)
    negative_members: torch.Tensor | None = None  # (B, T, M, 4)
    negative_members_valid: torch.Tensor | None = None  # (B, T, M)
    annotated: torch.Tensor | None = None  # (B, T) bool; None: every frame is annotated

    def target_sets(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The member boxes (2B, T, M, 4) and where they exist (2B, T, M) of the B sentences, then of their B negatives."""
        if self.members is None:
            return torch.cat([self.boxes, self.negative_boxes])[:, :, None], torch.cat([self.valid, self.negative_valid])[:, :, None]
        return torch.cat([self.members, self.negative_members]), torch.cat([self.members_valid, self.negative_members_valid])

    def to(self, device: torch.device | str) -> ClipBatch:
        """The batch with its tensors on ``device`` (sentences as they are)."""
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        return ClipBatch(**{name: value.to(device) if isinstance(value, torch.Tensor) else value for name, value in moved.items()})


def collate(items: list[ClipItem]) -> ClipBatch:
    """Stack items into a ``ClipBatch`` (embeddings to float32)."""

    def stack(name: str) -> torch.Tensor:
        return torch.from_numpy(np.stack([getattr(item, name) for item in items]))

    width = max(max(item.members.shape[1], item.negative_members.shape[1]) for item in items)

    def padded(name: str) -> torch.Tensor:
        """Member arrays (T, M, ...) padded with zeros (invalid members) to ``width`` members, then stacked."""
        arrays = [getattr(item, name) for item in items]
        return torch.from_numpy(np.stack([np.pad(a, [(0, 0), (0, width - a.shape[1])] + [(0, 0)] * (a.ndim - 2)) for a in arrays]))

    return ClipBatch(
        embeddings=stack("embeddings").float(),
        sentences=[item.sentence for item in items],
        negatives=[item.negative for item in items],
        boxes=stack("boxes"),
        valid=stack("valid"),
        negative_boxes=stack("negative_boxes"),
        negative_valid=stack("negative_valid"),
        same_video=torch.tensor([item.same_video for item in items]),
        input_sizes=torch.tensor([item.input_size for item in items]),
        members=padded("members"),
        members_valid=padded("members_valid"),
        negative_members=padded("negative_members"),
        negative_members_valid=padded("negative_members_valid"),
        annotated=stack("annotated"),
        pixels=None if items[0].pixels is None else stack("pixels"),
        previous=None if items[0].previous is None else stack("previous").float(),
    )


def batch_sizes(count: int, batch_size: int, steps: int) -> list[int]:
    """Sizes of ``steps`` batches that hold ``count`` items: full batches first, then smaller ones, one item at least
    in each (fewer items than steps happens only with batch size 1, to a rank one item short: ``batches`` pads)."""
    sizes = []
    left = max(count, steps)
    for step in range(steps):
        sizes.append(min(batch_size, left - (steps - step - 1)))
        left -= sizes[-1]
    return sizes


def batches(items: Iterator[ClipItem], count: int, batch_size: int, steps: int) -> Iterator[ClipBatch]:
    """The ``count`` items as exactly ``steps`` batches (``batch_sizes``): equal step counts keep DDP ranks in
    lock-step, and no item is left out. A rank whose items ran out repeats its first item."""
    source = iter(items)
    padding: list[ClipItem] = []
    for size in batch_sizes(count, batch_size, steps):
        chunk = list(itertools.islice(source, size)) or padding
        padding = padding or chunk[:1]
        yield collate(chunk)
