"""Common records that every benchmark reader produces.

A ``Video`` names its frames and how to read them (``FrameSource``), its referring expressions, and,
when masks exist, how to read them (``MaskSource``) and the per-frame boxes derived from them.
Records are plain, picklable data so that Ray can ship them between processes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

BoxXYXY = tuple[float, float, float, float]  # pixels, x1 y1 x2 y2, exclusive right/bottom edge


@dataclass(frozen=True)
class Expression:
    """One referring sentence. ``obj_id`` is None where the benchmark does not publish it."""

    exp_id: str
    text: str
    obj_id: int | None
    kind: str = ""  # RefShapes type tag: appearance | position | motion | appearance+motion


class FrameSource(Protocol):
    """Reads the frames of one video as RGB uint8 arrays (H, W, 3)."""

    def read(self, index: int) -> np.ndarray: ...

    def available(self) -> int:
        """How many of the video's frames exist on disk."""
        ...


class MaskSource(Protocol):
    """Reads per-frame object-id maps (H, W) int32, 0 = background; None where a frame is not annotated."""

    def read(self, index: int) -> np.ndarray | None: ...


@dataclass(frozen=True)
class Video:
    """One video with its expressions; ``boxes[obj_id][t]`` is None where the object is absent."""

    dataset: str
    split: str
    video_id: str
    frame_names: tuple[str, ...]
    height: int  # 0 when no frame is on disk
    width: int
    expressions: tuple[Expression, ...]
    frames: FrameSource | None = None
    masks: MaskSource | None = None
    boxes: dict[int, tuple[BoxXYXY | None, ...]] = field(default_factory=dict)

    @property
    def object_ids(self) -> tuple[int, ...]:
        """Annotated objects, in ascending order."""
        return tuple(sorted({e.obj_id for e in self.expressions if e.obj_id is not None}))


def tight_box(mask: np.ndarray) -> BoxXYXY | None:
    """The tight box of a boolean mask (exclusive right/bottom edge), or None when it is empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return (float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))


def boxes_from_masks(masks: MaskSource, n_frames: int, object_ids: tuple[int, ...]) -> dict[int, tuple[BoxXYXY | None, ...]]:
    """Per-object, per-frame tight boxes read from the masks; None where the object is absent."""
    per_object: dict[int, list[BoxXYXY | None]] = {obj: [] for obj in object_ids}
    for t in range(n_frames):
        ids = masks.read(t)
        for obj in object_ids:
            per_object[obj].append(None if ids is None else tight_box(ids == obj))
    return {obj: tuple(boxes) for obj, boxes in per_object.items()}
