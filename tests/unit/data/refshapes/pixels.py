"""What the id maps show, measured independently of the generator: centroids, objects wholly in view, motion."""

from __future__ import annotations

import math

import cv2
import numpy as np

from groprompt.data.refshapes.scene import ShapeObject
from groprompt.data.refshapes.video import SyntheticVideo


def centroid(mask: np.ndarray) -> np.ndarray:
    """The (x, y) mean of the mask's pixels."""
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()])


def touches_border(mask: np.ndarray) -> bool:
    """Whether a mask has a pixel in the frame's first or last row or column."""
    return bool(mask[[0, -1]].any() or mask[:, [0, -1]].any())


def stands_apart(ids: np.ndarray, obj_id: int) -> bool:
    """Whether an object is wholly in view: present, off the border, and touching no other object."""
    mask = ids == obj_id
    if not mask.any() or touches_border(mask):
        return False
    ring = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~mask
    return not ids[ring].any()


def measured_motion(video: SyntheticVideo, obj: ShapeObject) -> str:
    """The motion seen in the masks: a line fitted to centroids of the frames where the object is wholly in view."""
    whole = [t for t, ids in enumerate(video.ids) if stands_apart(ids, obj.obj_id)]
    assert len(whole) >= 2, f"{video.video_id}/{obj.obj_id}: fewer than two frames wholly in view"
    points = np.array([centroid(video.ids[t] == obj.obj_id) for t in whole])
    vx, vy = (np.polyfit(whole, points[:, axis], 1)[0] for axis in (0, 1))
    if math.hypot(vx, vy) < video.ids.shape[-1] / 256:
        return "still"
    if abs(vx) > abs(vy):
        return "right" if vx > 0 else "left"
    return "down" if vy > 0 else "up"
