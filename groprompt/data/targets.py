"""What a shard sample says about its referring expressions: which name an annotated object, and their boxes
(normalised cxcywh) per frame, with the member objects of a group target."""

from __future__ import annotations

from typing import Any

import numpy as np

from groprompt.data.shards import sample_groups
from groprompt.errors import DataError


def normalised_boxes(meta: dict[str, Any], obj_id: int | None, frames: range) -> tuple[np.ndarray, np.ndarray]:
    """(T, 4) normalised cxcywh boxes of an object over some frames of a sample, and where they exist."""
    per_frame = meta["boxes"].get(str(obj_id), [None] * len(meta["frame_names"])) if obj_id is not None else []
    boxes = np.zeros((len(frames), 4), np.float32)
    valid = np.zeros(len(frames), bool)
    for row, t in enumerate(frames):
        box = per_frame[t] if per_frame else None
        if box is None:
            continue
        x1, y1, x2, y2 = box
        w, h = meta["width"], meta["height"]
        boxes[row] = ((x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h)
        valid[row] = True
    return boxes, valid


def member_boxes(meta: dict[str, Any], obj_id: int | None, frames: range) -> tuple[np.ndarray, np.ndarray]:
    """(T, M, 4) normalised cxcywh boxes of the M objects a target is made of (a group's objects, or the object
    itself) over some frames of a sample, and (T, M) where they exist; M = 0 without a target."""
    if obj_id is None:
        return np.zeros((len(frames), 0, 4), np.float32), np.zeros((len(frames), 0), bool)
    members = sample_groups(meta).get(int(obj_id), (int(obj_id),))
    missing = [obj for obj in members if str(obj) not in meta["boxes"]]
    if missing:
        raise DataError(f"sample {meta['key']}: no boxes of object(s) {missing} of target {obj_id}; re-shard with pipelines/shard.py")
    boxes, valid = zip(*(normalised_boxes(meta, obj, frames) for obj in members))
    return np.stack(boxes, axis=1), np.stack(valid, axis=1)


def referring_expressions(meta: dict[str, Any]) -> list[dict[str, Any]]:
    """Expressions that name an annotated object."""
    return [e for e in meta["expressions"] if e["obj_id"] is not None and str(e["obj_id"]) in meta["boxes"]]
