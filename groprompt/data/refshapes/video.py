"""One RefShapes video in memory: a valid scene, its expressions and its rendered frames, all from one seeded stream.

Which videos get a multi-object and a leaves-frame expression, and those expressions, come from a second stream of the
same seed and index: a video that gets neither is the video that shares 0 give, and a multi-object expression changes
nothing else of its video. A leaves-frame video's scene is drawn with a leaver (``sample_scene``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from groprompt.data.records import Expression
from groprompt.data.refshapes.scene import ShapeObject, render_frames, sample_scene
from groprompt.data.refshapes.sentences import LEAVES_FRAME, MULTI_OBJECT, sample_expressions, sample_special_expressions
from groprompt.data.refshapes.spec import RefShapesSpec

MAX_ATTEMPTS = 500
SPECIAL_STREAM = 1  # the last word of the seed of the stream that draws the multi-object and leaves-frame expressions


@dataclass(frozen=True)
class SyntheticVideo:
    """One generated video: RGB frames, object-id maps (visible pixels), objects, expressions and the groups of objects
    that multi-object expressions refer to (``groprompt.data.records.Video.groups``)."""

    video_id: str
    frames: np.ndarray  # (T, H, W, 3) uint8
    ids: np.ndarray  # (T, H, W) uint8, 0 = background, obj_id where the object is visible
    objects: tuple[ShapeObject, ...]
    expressions: tuple[Expression, ...]
    groups: dict[int, tuple[int, ...]] = field(default_factory=dict)  # group id (after the objects) -> its object ids

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
    special = np.random.default_rng([spec.seed, index, SPECIAL_STREAM])
    shares = {MULTI_OBJECT: spec.multi_object_share, LEAVES_FRAME: spec.leaves_frame_share}
    kinds = [kind for kind, share in shares.items() if special.random() < share]
    count = int(rng.integers(spec.min_objects, spec.max_objects + 1))
    for _ in range(MAX_ATTEMPTS):
        scene = sample_scene(rng, spec, count, leaver=LEAVES_FRAME in kinds)
        if scene is None:
            continue
        expressions = sample_expressions(rng, scene.objects, spec)
        if expressions:
            frames = render_frames(rng, scene, spec.size)
            extra, groups = sample_special_expressions(special, scene.objects, spec, len(expressions), kinds)
            return SyntheticVideo(video_id(index), frames, scene.ids, scene.objects, expressions + extra, groups)
    raise RuntimeError(f"{spec}: no valid scene for video {index} in {MAX_ATTEMPTS} attempts")
