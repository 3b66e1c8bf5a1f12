"""What a RefShapes benchmark is generated from: the number and size of videos, the seed and the objects per video."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RefShapesSpec:
    """What to generate: ``videos`` videos of ``frames`` frames, ``size`` x ``size`` pixels, from ``seed``."""

    videos: int = 40
    frames: int = 12
    size: int = 256
    seed: int = 0
    min_objects: int = 2
    max_objects: int = 4

    def __post_init__(self) -> None:
        if self.videos < 1 or self.frames < 2 or self.size < 64:
            raise ValueError(f"{self}: need videos >= 1, frames >= 2 and size >= 64")
        if not 2 <= self.min_objects <= self.max_objects <= 6:
            raise ValueError(f"{self}: need 2 <= min_objects <= max_objects <= 6")
