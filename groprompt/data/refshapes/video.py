"""One RefShapes video in memory: a valid scene, its expressions and its rendered frames, all from one seeded stream."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from groprompt.data.records import Expression
from groprompt.data.refshapes.scene import ShapeObject, render_frames, sample_scene
from groprompt.data.refshapes.sentences import sample_expressions
from groprompt.data.refshapes.spec import RefShapesSpec

MAX_ATTEMPTS = 500


@dataclass(frozen=True)
class SyntheticVideo:
    """One generated video: RGB frames, object-id maps (visible pixels), objects and expressions."""

    video_id: str
    frames: np.ndarray  # (T, H, W, 3) uint8
    ids: np.ndarray  # (T, H, W) uint8, 0 = background, obj_id where the object is visible
    objects: tuple[ShapeObject, ...]
    expressions: tuple[Expression, ...]

    @property
    def frame_names(self) -> tuple[str, ...]:
        """``00000``, ``00001``, ...: the file stems of the frames and masks."""
        return tuple(f"{t:05d}" for t in range(len(self.frames)))


def video_id(index: int) -> str:
    """The id of the ``index``-th video, e.g. ``rs000012``."""
    return f"rs{index:06d}"


def make_video(spec: RefShapesSpec, index: int) -> SyntheticVideo:
    """Generate the ``index``-th video of ``spec`` in memory; the same arguments give the same video."""
    rng = np.random.default_rng([spec.seed, index])
    count = int(rng.integers(spec.min_objects, spec.max_objects + 1))
    for _ in range(MAX_ATTEMPTS):
        scene = sample_scene(rng, spec, count)
        if scene is None:
            continue
        expressions = sample_expressions(rng, scene.objects, spec)
        if expressions:
            frames = render_frames(rng, scene, spec.size)
            return SyntheticVideo(video_id(index), frames, scene.ids, scene.objects, expressions)
    raise RuntimeError(f"{spec}: no valid scene for video {index} in {MAX_ATTEMPTS} attempts")
