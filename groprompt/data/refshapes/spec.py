"""What a RefShapes benchmark is generated from: the number and size of videos, the seed, the objects per video and
the share of videos given a sentence about several objects or about an object that leaves the frame."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RefShapesSpec:
    """What to generate: ``videos`` videos of ``frames`` frames, ``size`` x ``size`` pixels, from ``seed``.

    ``multi_object_share`` and ``leaves_frame_share``: the chance that a video gets one sentence about several of its
    objects ("the two red circles"), and one about an object that leaves the frame, where a true and unique one exists.
    Both 0 by default: the four original types only, the videos of earlier versions unchanged.
    """

    videos: int = 40
    frames: int = 12
    size: int = 256
    seed: int = 0
    min_objects: int = 2
    max_objects: int = 4
    multi_object_share: float = 0.0
    leaves_frame_share: float = 0.0

    def __post_init__(self) -> None:
        if self.videos < 1 or self.frames < 2 or self.size < 64:
            raise ValueError(f"{self}: need videos >= 1, frames >= 2 and size >= 64")
        if not 2 <= self.min_objects <= self.max_objects <= 6:
            raise ValueError(f"{self}: need 2 <= min_objects <= max_objects <= 6")
        if not (0 <= self.multi_object_share <= 1 and 0 <= self.leaves_frame_share <= 1):
            raise ValueError(f"{self}: need multi_object_share and leaves_frame_share in [0, 1]")
