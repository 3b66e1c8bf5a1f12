"""Common records that every benchmark reader produces.

A ``Video`` names its frames and how to read them (``FrameSource``), its referring expressions, and,
when masks exist, how to read them (``MaskSource``) and the per-frame boxes derived from them.
Records are plain, picklable data so that Ray can ship them between processes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from groprompt.errors import DataError
from groprompt.files import Location

BoxXYXY = tuple[float, float, float, float]  # pixels, x1 y1 x2 y2, exclusive right/bottom edge


@dataclass(frozen=True)
class Expression:
    """One referring sentence. ``obj_id`` names its target: an object of the id maps, or, for a sentence that refers to
    several objects (MeViS), a group of them (``Video.groups``); None where the benchmark does not publish it."""

    exp_id: str
    text: str
    obj_id: int | None
    kind: str = ""  # RefShapes type tag: appearance | position | motion | appearance+motion


class FrameSource(Protocol):
    """Reads the frames of one video as RGB uint8 arrays (H, W, 3)."""

    def read(self, index: int) -> np.ndarray: ...

    def file(self, index: int) -> Location:
        """The file that holds frame ``index``: its image, or the whole video's file."""
        ...

    def available(self) -> int:
        """How many of the video's frames exist on disk."""
        ...


class MaskSource(Protocol):
    """Reads per-frame object-id maps (H, W) int32, 0 = background; None where a frame is not annotated."""

    def read(self, index: int) -> np.ndarray | None: ...

    def file(self, index: int) -> Location:
        """The file that holds frame ``index``'s annotation (named in errors)."""
        ...


@dataclass(frozen=True)
class Video:
    """One video with its expressions; ``boxes[obj_id][t]`` is None where the target is absent.

    ``groups`` maps a group target (never an id in the masks) to the object ids it is made of: its mask in a frame is
    the union of theirs, its box their union box. Empty for benchmarks whose sentences each refer to one object.
    """

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
    annotation_file: Location | None = None  # the file that lists the video and its sentences (named in errors)
    groups: dict[int, tuple[int, ...]] = field(default_factory=dict)  # target id -> its objects (``target_mask``)

    @property
    def object_ids(self) -> tuple[int, ...]:
        """Annotated targets (expressions' ``obj_id``: objects and groups), in ascending order."""
        return tuple(sorted({e.obj_id for e in self.expressions if e.obj_id is not None}))

    @property
    def boxed_ids(self) -> tuple[int, ...]:
        """The targets and the objects of their groups, in ascending order: whose boxes a shard keeps (a group's own
        objects' boxes are what the set mode trains on, ``model.multi_object``)."""
        members = {obj for target in self.object_ids for obj in self.groups.get(target, ())}
        return tuple(sorted(set(self.object_ids) | members))

    def describe(self) -> str:
        """``<annotation file>: video '<id>'``, how errors about the video as a whole name it."""
        where = f"video {self.video_id!r}"
        return f"{self.annotation_file}: {where}" if self.annotation_file is not None else where


def tight_box(mask: np.ndarray) -> BoxXYXY | None:
    """The tight box of a boolean mask (exclusive right/bottom edge), or None when it is empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return (float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))


def checked_mask(video: Video, index: int) -> np.ndarray | None:
    """Frame ``index``'s id map, None where it is not annotated; a ``DataError`` naming the file when its size is
    not the size of the video's frames (boxes taken from it would be in other pixels)."""
    ids = video.masks.read(index) if video.masks is not None else None
    if ids is not None and video.height and ids.shape != (video.height, video.width):
        raise DataError(
            f"{video.masks.file(index)}: annotation is {ids.shape[1]}x{ids.shape[0]} pixels, "
            f"the frames of video {video.video_id!r} are {video.width}x{video.height}"
        )
    return ids


def target_mask(ids: np.ndarray, target: int, groups: Mapping[int, Sequence[int]]) -> np.ndarray:
    """The pixels of ``target`` in an id map: a group's (an expression that refers to several objects, ``groups[target]``
    its object ids) are the union of its objects' pixels; any other target is the object with that id."""
    members = groups.get(target)
    return ids == target if members is None else np.isin(ids, members)


def frame_boxes(
    ids: np.ndarray | None, object_ids: tuple[int, ...], groups: Mapping[int, Sequence[int]] | None = None
) -> dict[int, BoxXYXY | None]:
    """Each target's tight box in one id map (a group's: the union box of its objects, ``target_mask``); None
    everywhere for an unannotated frame (``ids`` None)."""
    return {obj: None if ids is None else tight_box(target_mask(ids, obj, groups or {})) for obj in object_ids}


def boxes_from_masks(video: Video) -> dict[int, tuple[BoxXYXY | None, ...]]:
    """Per-target, per-frame tight boxes read from the video's masks (``checked_mask``); None where the target is absent."""
    per_frame = [frame_boxes(checked_mask(video, t), video.object_ids, video.groups) for t in range(len(video.frame_names))]
    return {obj: tuple(boxes[obj] for boxes in per_frame) for obj in video.object_ids}


def check_objects_annotated(video: Video, boxes: Mapping[int, Sequence[BoxXYXY | None]]) -> None:
    """Refuse, naming the annotation file, video and expressions, a video with masks in which some expression's
    object has a box in no frame: it could only be scored against an empty mask."""
    if video.masks is None:
        return
    unseen = [e for e in video.expressions if e.obj_id is not None and not any(box is not None for box in boxes.get(e.obj_id, ()))]
    if unseen:
        named = ", ".join(f"expression {e.exp_id!r} (object {e.obj_id})" for e in unseen)
        raise DataError(f"{video.describe()}: {named}: the object has a mask in none of the video's annotated frames")
