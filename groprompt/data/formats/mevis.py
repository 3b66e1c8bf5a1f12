"""MeViS (henghuiding/MeViS): motion expressions, some of which refer to several objects.

    <root>/<split>/JPEGImages/<video>/<frame>.jpg
    <root>/<split>/meta_expressions.json
        {"videos": {"<video>": {"frames": ["00000", ...],
                                "expressions": {"<exp_id>": {"exp": "...", "obj_id": [0, 1], "anno_id": [12, 13]}}}}}
    <root>/<split>/mask_dict.json          every split but "valid"
        {"<anno_id>": [one COCO RLE {"size": [h, w], "counts": "..."} per frame, null where the object is absent]}

Splits: "train"; "valid_u" (masks given: the local numbers, the default split); "valid" (no masks: the evaluation
server's). Both valid splits are test splits; training validates on held-out "train" videos ("train-holdout").

Objects and targets: a video's objects are the anno_ids its expressions name, numbered 1..N in ascending anno_id
order; these are the ids of its mask id maps (``RleMasks``). An expression's target (``Expression.obj_id``) is its
object, or, when it names several, a group (``Video.groups``: ids N+1, N+2, ... one per distinct set of objects, in
meta order) whose mask is the union of its objects' masks and whose box is their union box, the box the one-box mode
trains on (ReferFormer's MeViS convention). An expression naming no anno_id (MeViS v2's no-target sentences) has no
target (obj_id None): never trained on, scored by the MeViS protocol against empty masks. The meta's ``obj_id``
lists are not read: the masks and the protocol go by anno_id. In "valid" every obj_id is None.

Overlap: MeViS stores each object's mask on its own, so two may overlap. In the id maps (the shards' masks, and the
boxes taken from them) the higher object id takes an overlapped pixel, as ``groprompt.mask_io.ids_from_masks`` does;
the MeViS protocol (``groprompt.evaluation.mevis``) takes the union of the objects' own masks (``RleMasks.union``).

mask_dict.json is parsed whole, as the official tools do, and each ``Video`` carries its objects' RLEs (decoded only
when a frame's mask is read). Refused, each in one line naming the file: a malformed meta entry, an anno_id missing
from mask_dict.json, a mask list whose length is not the video's frame count, an RLE whose size is not the frames',
and a frames list that disagrees with the JPEGs on disk.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from groprompt.data.formats.common import ImageFolderFrames, attach_boxes, load_json
from groprompt.data.records import Expression, Video
from groprompt.data.splits import parse_split
from groprompt.errors import DataError
from groprompt.files import Location, list_folder, location
from groprompt.mask_io import VOID_ID, rle_to_mask

DATASET = "mevis"
META_NAME = "meta_expressions.json"
MASK_DICT = "mask_dict.json"
DEFAULT_SPLIT = "valid_u"
SERVER_SPLIT = "valid"  # frames and sentences only: scored by the evaluation server from a submission zip
TEST_SPLITS = frozenset({"valid_u", SERVER_SPLIT})

Rle = Mapping[str, Any]


@dataclass(frozen=True)
class RleMasks:
    """The masks of one MeViS video: ``objects[k]`` holds object k+1's COCO RLE in each frame, None where it is absent."""

    path: Location  # mask_dict.json, named in errors
    size: tuple[int, int]  # (height, width) of every RLE, checked against the frames
    objects: tuple[tuple[Rle | None, ...], ...]

    def file(self, index: int) -> Location:
        return self.path

    def object_mask(self, obj: int, index: int) -> np.ndarray:
        """Object ``obj``'s (H, W) bool mask in frame ``index``; empty where it is absent."""
        rle = self.objects[obj - 1][index]
        if rle is None:
            return np.zeros(self.size, bool)
        try:
            return rle_to_mask(rle)
        except DataError as error:
            raise DataError(f"{self.path}: object {obj}, frame {index}: {error}") from None

    def read(self, index: int) -> np.ndarray:
        """Frame ``index``'s (H, W) int32 id map: object k on its mask, 0 elsewhere; the higher id where masks overlap."""
        ids = np.zeros(self.size, np.int32)
        for obj in range(1, len(self.objects) + 1):
            ids[self.object_mask(obj, index)] = obj
        return ids

    def union(self, objects: Iterable[int], index: int) -> np.ndarray:
        """The union (H, W) bool of the masks of ``objects`` in frame ``index``: a MeViS expression's ground truth."""
        mask = np.zeros(self.size, bool)
        for obj in objects:
            mask |= self.object_mask(obj, index)
        return mask


@dataclass(frozen=True)
class _Entry:
    """One video of the meta: its frame names and its expressions as (exp_id, sentence, anno_ids)."""

    frames: tuple[str, ...]
    expressions: tuple[tuple[str, str, tuple[int, ...]], ...]


def split_has_masks(root: str | Path, split: str) -> bool:
    """Whether the reader gives ``split`` masks (a held-out part: its base split's): a mask_dict.json under ``root``,
    never read for the server split."""
    base = parse_split(split).base
    return base != SERVER_SPLIT and (location(root) / base / MASK_DICT).is_file()


def read_mevis(root: str | Path, split: str | None = None, with_boxes: bool = True) -> Iterator[Video]:
    """MeViS videos of ``split`` (default "valid_u"). The annotation files are parsed now; JPEG folders are listed and
    RLE sizes checked as the videos are taken, frames and masks decoded lazily. ``root`` may be local or in object
    storage."""
    root, split = location(root), split or DEFAULT_SPLIT
    if not root.is_dir():
        raise DataError(f"{root}: no such dataset folder (expected <root>/{split}/{META_NAME})")
    meta = root / split / META_NAME
    entries = _load_meta(meta, with_anno_ids=split != SERVER_SPLIT)
    mask_dict = None if split == SERVER_SPLIT else _load_mask_dict(root / split / MASK_DICT)
    return _videos(entries, meta, root / split, split, mask_dict, with_boxes)


def _load_meta(path: Location, with_anno_ids: bool) -> dict[str, _Entry]:
    """Parse meta_expressions.json: video id -> its entry, in file order; anno_id lists only ``with_anno_ids``."""
    data = load_json(path, "the MeViS meta expressions")
    if not isinstance(data, dict) or not isinstance(data.get("videos"), dict):
        raise DataError(f'{path}: expected an object with a "videos" object')
    entries = {}
    for video_id, entry in data["videos"].items():
        where = f"{path}: video {video_id!r}"
        frames = entry.get("frames") if isinstance(entry, dict) else None
        if not isinstance(frames, list) or not frames or not all(isinstance(name, str) and name for name in frames):
            raise DataError(f'{where}: has no "frames" list of frame names')
        if len(set(frames)) != len(frames):
            raise DataError(f"{where}: lists a frame twice")
        if not isinstance(entry.get("expressions"), dict):
            raise DataError(f'{where}: has no "expressions" object')
        expressions = tuple(
            _expression(str(exp_id), value, f"{where}, expression {exp_id!r}", with_anno_ids)
            for exp_id, value in entry["expressions"].items()
        )
        entries[str(video_id)] = _Entry(tuple(frames), expressions)
    return entries


def _expression(exp_id: str, value: object, where: str, with_anno_ids: bool) -> tuple[str, str, tuple[int, ...]]:
    """(exp_id, sentence, anno_ids) of one meta expression."""
    text = value.get("exp") if isinstance(value, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise DataError(f'{where}: has no "exp" sentence')
    if not with_anno_ids:
        return exp_id, text.strip(), ()
    anno_ids = value.get("anno_id")
    if not isinstance(anno_ids, list) or not all(_is_id(a) for a in anno_ids):
        raise DataError(f'{where}: "anno_id" must be a list of annotation ids, got {anno_ids!r}')
    return exp_id, text.strip(), tuple(int(a) for a in anno_ids)


def _is_id(value: object) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool) and value >= 0) or (isinstance(value, str) and value.isdigit())


def _load_mask_dict(path: Location) -> dict[str, Any]:
    """Parse mask_dict.json: anno_id (text) -> per-frame RLEs."""
    data = load_json(path, "the MeViS masks of the split: every split but 'valid' has them")
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected an object mapping anno_id to per-frame masks")
    return data


def _videos(
    entries: dict[str, _Entry], meta: Location, split_dir: Location, split: str, mask_dict: dict[str, Any] | None, with_boxes: bool
) -> Iterator[Video]:
    for video_id, entry in entries.items():
        frames = _checked_frames(split_dir / "JPEGImages" / video_id, entry.frames, meta)
        height, width = frames.size()
        if height == 0:
            raise DataError(f"{frames.folder}: none of the video's JPEGs reads")
        anno_ids = sorted({a for _, _, ids in entry.expressions for a in ids})
        if len(anno_ids) >= VOID_ID:
            raise DataError(f"{meta}: video {video_id!r}: {len(anno_ids)} objects; id maps hold at most {VOID_ID - 1}")
        object_of = {anno: k + 1 for k, anno in enumerate(anno_ids)}
        groups: dict[tuple[int, ...], int] = {}  # objects -> group id
        expressions = tuple(
            Expression(exp_id=exp_id, text=text, obj_id=_target(tuple(sorted({object_of[a] for a in ids})), groups, len(anno_ids)))
            for exp_id, text, ids in entry.expressions
        )
        masks = None
        if mask_dict is not None:
            path = split_dir / MASK_DICT
            objects = tuple(_object_rles(mask_dict, anno, video_id, entry.frames, (height, width), path) for anno in anno_ids)
            masks = RleMasks(path, (height, width), objects)
        video = Video(
            dataset=DATASET,
            split=split,
            video_id=video_id,
            frame_names=entry.frames,
            height=height,
            width=width,
            expressions=expressions,
            frames=frames,
            masks=masks,
            annotation_file=meta,
            groups={group: objects for objects, group in groups.items()},
        )
        yield attach_boxes(video) if with_boxes else video


def _target(objects: tuple[int, ...], groups: dict[tuple[int, ...], int], n_objects: int) -> int | None:
    """An expression's target: None without objects, its object, or the group of its objects (numbered after the
    video's ``n_objects`` objects, one per distinct set; ``groups`` collects them)."""
    if len(objects) <= 1:
        return objects[0] if objects else None
    return groups.setdefault(objects, n_objects + len(groups) + 1)


def _checked_frames(folder: Location, names: tuple[str, ...], meta: Location) -> ImageFolderFrames:
    """The video's frames; a ``DataError`` naming the folder when its JPEGs are not exactly the frames the meta lists."""
    try:
        on_disk = {path.stem for path, _ in list_folder(folder) if path.name.endswith(".jpg")}
    except (FileNotFoundError, NotADirectoryError):
        on_disk = set()
    missing, unlisted = [n for n in names if n not in on_disk], sorted(on_disk - set(names))
    if missing or unlisted:
        problems = [f"{len(missing)} of its {len(names)} frames have no JPEG (first: {missing[0]}.jpg)"] if missing else []
        problems += [f"{len(unlisted)} JPEGs are not listed (first: {unlisted[0]}.jpg)"] if unlisted else []
        raise DataError(f"{folder}: disagrees with the frames list of {meta}: {'; '.join(problems)}")
    return ImageFolderFrames(folder, names, ".jpg")


def _object_rles(
    mask_dict: Mapping[str, Any], anno_id: int, video_id: str, frames: tuple[str, ...], size: tuple[int, int], path: Location
) -> tuple[Rle | None, ...]:
    """One object's per-frame RLEs, checked: present, one per frame, each of the frames' size (when known)."""
    where = f"{path}: anno_id {anno_id} (video {video_id!r})"
    rles = mask_dict.get(str(anno_id))
    if rles is None:
        raise DataError(f"{where}: missing, but an expression of the video names it")
    if not isinstance(rles, list) or len(rles) != len(frames):
        count = f"{len(rles)} masks" if isinstance(rles, list) else "not a list of masks"
        raise DataError(f"{where}: {count}, but the video has {len(frames)} frames")
    for frame, rle in zip(frames, rles):
        if rle is None:
            continue
        rle_size = rle.get("size") if isinstance(rle, dict) else None
        if not (isinstance(rle_size, list) and len(rle_size) == 2 and isinstance(rle.get("counts"), str)):
            raise DataError(f'{where}, frame {frame}: not a COCO RLE {{"size": [h, w], "counts": "..."}}')
        if size != (0, 0) and tuple(rle_size) != size:
            raise DataError(
                f"{where}, frame {frame}: mask is {rle_size[1]}x{rle_size[0]} pixels, the video's frames are {size[1]}x{size[0]}"
            )
    return tuple(rles)
