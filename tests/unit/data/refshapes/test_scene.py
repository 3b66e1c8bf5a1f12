"""The scene: masks inside the drawn shapes in their colour, occlusion, exits, and motion seen in the pixels."""

from __future__ import annotations

import math

import numpy as np

from groprompt.data.refshapes.scene import COLOURS, ShapeObject
from groprompt.data.refshapes.spec import RefShapesSpec
from groprompt.data.refshapes.video import SyntheticVideo
from tests.unit.data.refshapes.pixels import measured_motion


def measured_colour(video: SyntheticVideo, obj: ShapeObject) -> str:
    """The named colour nearest to the median of the object's first-frame pixels."""
    pixels = video.frames[0][video.ids[0] == obj.obj_id]
    median = np.median(pixels, axis=0)
    return min(COLOURS, key=lambda name: np.linalg.norm(median - np.asarray(COLOURS[name])))


def inside_shape(obj: ShapeObject, t: int, xs: np.ndarray, ys: np.ndarray, tolerance: float = 1.5) -> np.ndarray:
    """Whether pixels lie inside the object's shape (circumradius r), give or take the rasteriser's edge pixels."""
    cx, cy = obj.centre(t)
    dx, dy, r = xs - cx, ys - cy, obj.radius
    inside = np.hypot(dx, dy) <= r + tolerance
    if obj.shape == "square":
        inside &= np.maximum(abs(dx), abs(dy)) <= 0.7 * r + tolerance
    elif obj.shape == "cross":
        inside &= np.minimum(abs(dx), abs(dy)) <= 0.34 * r + tolerance
    elif obj.shape in ("triangle", "diamond"):
        corners = 3 if obj.shape == "triangle" else 4
        for k in range(corners):
            normal = -math.pi / 2 + math.pi / corners + 2 * math.pi * k / corners
            inside &= dx * math.cos(normal) + dy * math.sin(normal) <= r * math.cos(math.pi / corners) + tolerance
    return inside


def test_masks_lie_inside_the_drawn_shapes_in_their_colour(spec: RefShapesSpec, videos: list[SyntheticVideo]) -> None:
    for video in videos:
        for obj in video.objects:
            for t in range(spec.frames):
                ys, xs = np.nonzero(video.ids[t] == obj.obj_id)
                assert inside_shape(obj, t, xs, ys).all(), f"{video.video_id}/{obj.obj_id}/{t}"
            assert measured_colour(video, obj) == obj.colour


def test_later_objects_occlude_earlier_ones_and_overlaps_occur(spec: RefShapesSpec, videos: list[SyntheticVideo]) -> None:
    ys, xs = np.mgrid[0 : spec.size, 0 : spec.size]
    overlaps = 0
    for video in videos:
        for obj in video.objects:
            for t in range(spec.frames):
                core = np.hypot(xs - obj.centre(t)[0], ys - obj.centre(t)[1]) <= 0.3 * obj.radius
                covering = set(np.unique(video.ids[t][core])) - {0, obj.obj_id}
                assert all(other > obj.obj_id for other in covering), "only later objects may cover an object"
                overlaps += bool(covering)
    assert overlaps > 0


def test_objects_sometimes_leave_the_frame(spec: RefShapesSpec, videos: list[SyntheticVideo]) -> None:
    absent = 0
    for video in videos:
        for obj in video.objects:
            for t in range(spec.frames):
                outline = obj.outline(t)
                if (outline.max(axis=0) < -1).any() or (outline.min(axis=0) > spec.size).any():
                    assert not (video.ids[t] == obj.obj_id).any()
                    absent += 1
    assert absent > 0


def test_motion_labels_match_the_masks(videos: list[SyntheticVideo]) -> None:
    for video in videos:
        for obj in video.objects:
            assert measured_motion(video, obj) == obj.motion, f"{video.video_id}/{obj.obj_id}"


def test_every_video_has_a_lookalike_pair_that_differs_in_motion(videos: list[SyntheticVideo]) -> None:
    for video in videos:
        pairs = [
            (a, b)
            for a in video.objects
            for b in video.objects
            if a.obj_id < b.obj_id and a.look == b.look and measured_motion(video, a) != measured_motion(video, b)
        ]
        assert pairs, video.video_id
