"""Ref-YouTube-VOS, and every benchmark laid out like it (the ReferFormer layout).

    <root>/<split>/JPEGImages/<video>/<frame>.jpg
    <root>/<split>/Annotations/<video>/<frame>.png        palette id maps (train; not public for valid)
    <root>/meta_expressions/<split>/meta_expressions.json
        {"videos": {"<video>": {"expressions": {"<exp_id>": {"exp": "...", "obj_id": "1", "type": "..."}},
                                "frames": ["00000", ...]}}}

``obj_id`` is absent from the Ref-YouTube-VOS valid meta (``Expression.obj_id`` is then None); ``type`` is an
optional tag (RefShapes) that becomes ``Expression.kind``. Ref-DAVIS17 and RefShapes use this reader.

RefShapes alone may give a sentence about several objects: ``"obj_id": ["1", "3"]``. Its target is a group
(``Video.groups``), numbered after the highest object id the video's sentences name (RefShapes names every object of
its masks), one per distinct set of objects in meta order, as the MeViS reader numbers them; its mask is the union of
its objects', its box their union box.

The Ref-YouTube-VOS "valid" meta lists the valid (202) and the test (305) videos together; as in ReferFormer's
``inference_ytvos.py``, the videos of ``meta_expressions/test`` are dropped from "valid", and a dataset root without
that file is refused for "valid" (its submission would hold the test videos). Only an annotation file given alone
(counting) is read as it is.
Its valid masks are not public, so training validates on held-out "train" videos ("train-holdout").
``root`` may also be the meta_expressions.json file itself (annotation-only counting).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from groprompt.data.formats.common import ImageFolderFrames, IndexPngMasks, attach_boxes, load_json
from groprompt.data.records import Expression, Video
from groprompt.errors import DataError
from groprompt.files import Location, location

META_NAME = "meta_expressions.json"


def meta_path(root: Location, split: str) -> Location:
    """Where the meta expressions of ``split`` live under a dataset root."""
    return root / "meta_expressions" / split / META_NAME


def _obj_id(value: object, where: str) -> int | None:
    if value is None:
        return None
    try:
        obj_id = int(str(value).strip())
    except ValueError:
        raise DataError(f"{where}: obj_id {value!r} is not an integer") from None
    if obj_id <= 0:
        raise DataError(f"{where}: obj_id {obj_id} must be positive (0 is the background)")
    return obj_id


def _object_ids(value: object, where: str, several: bool) -> tuple[int, ...]:
    """An expression's objects: none, one, or (only where ``several`` objects are allowed) a list of two or more ids."""
    if not (several and isinstance(value, list)):
        obj_id = _obj_id(value, where)
        return () if obj_id is None else (obj_id,)
    ids = [_obj_id(item, where) for item in value]
    if len(ids) < 2 or None in ids or len(set(ids)) < len(ids):
        raise DataError(f"{where}: an obj_id list must name two or more distinct objects, got {value!r}")
    return tuple(sorted(obj for obj in ids if obj is not None))


def _group_ids(targets: list[tuple[int, ...]]) -> dict[tuple[int, ...], int]:
    """A group id for each distinct set of two or more objects, numbered after the highest object id named."""
    first = max((obj for objects in targets for obj in objects), default=0) + 1
    sets = dict.fromkeys(objects for objects in targets if len(objects) > 1)
    return {objects: first + k for k, objects in enumerate(sets)}


Meta = dict[str, tuple[tuple[str, ...], tuple[Expression, ...], dict[int, tuple[int, ...]]]]


def load_meta(path: Location, several_objects: bool = False) -> Meta:
    """Parse a meta_expressions.json: video id -> (frame names, expressions, groups), in file order; an ``obj_id`` list
    (a sentence about several objects) is read only with ``several_objects``."""
    data = load_json(path, "the meta expressions file")
    if not isinstance(data, dict) or not isinstance(data.get("videos"), dict):
        raise DataError(f'{path}: expected an object with a "videos" object')
    videos = {}
    for video_id, entry in data["videos"].items():
        where = f"{path}: video {video_id!r}"
        if not isinstance(entry, dict):
            raise DataError(f"{where}: expected an object")
        frames = entry.get("frames")
        if not isinstance(frames, list) or not all(isinstance(name, str) and name for name in frames):
            raise DataError(f'{where}: has no "frames" list of frame names')
        expressions = entry.get("expressions")
        if not isinstance(expressions, dict):
            raise DataError(f'{where}: has no "expressions" object')
        parsed = []  # (exp_id, sentence, objects, type)
        for exp_id, expression in expressions.items():
            exp_where = f"{where}, expression {exp_id!r}"
            if not isinstance(expression, dict) or not isinstance(expression.get("exp"), str):
                raise DataError(f'{exp_where}: has no "exp" text')
            text = expression["exp"].strip()
            if not text:
                raise DataError(f"{exp_where}: empty sentence")
            kind = expression.get("type", "")
            if not isinstance(kind, str):
                raise DataError(f'{exp_where}: "type" must be a string')
            parsed.append((str(exp_id), text, _object_ids(expression.get("obj_id"), exp_where, several_objects), kind))
        group_of = _group_ids([objects for _, _, objects, _ in parsed])
        targets = [group_of.get(objects, objects[0] if objects else None) for _, _, objects, _ in parsed]
        described = tuple(Expression(exp_id, text, target, kind) for (exp_id, text, _, kind), target in zip(parsed, targets))
        videos[str(video_id)] = (tuple(frames), described, {group: objects for objects, group in group_of.items()})
    return videos


def _locate(root: Location, split: str | None, default_split: str) -> tuple[Location, Location | None, str]:
    """(meta file, dataset root or None when only the annotation file is given, split)."""
    if root.is_file():
        if root.name == META_NAME and root.parent.parent.name == "meta_expressions":
            file_split = root.parent.name
            if split is not None and split != file_split:
                raise DataError(f"{root}: is the {file_split!r} meta, but split {split!r} was asked for")
            return root, root.parent.parent.parent, file_split
        return root, None, split or default_split
    if not root.is_dir():
        raise DataError(f"{root}: no such dataset folder or annotation file")
    split = split or default_split
    return meta_path(root, split), root, split


def read_referformer_layout(
    root: str | Path | Location,
    split: str | None,
    with_boxes: bool,
    *,
    dataset: str,
    default_split: str = "valid",
    drop_test_from_valid: bool = False,
    several_objects: bool = False,
) -> Iterator[Video]:
    """Videos of a benchmark in the ReferFormer layout (``obj_id`` lists only with ``several_objects``). The meta file
    is parsed now; frames lazily. ``root`` may be local or in object storage."""
    meta, data_root, split = _locate(location(root), split, default_split)
    videos = load_meta(meta, several_objects)
    if drop_test_from_valid and split == "valid" and data_root is not None:
        test_meta = meta_path(data_root, "test")
        if not test_meta.is_file():
            raise DataError(
                f"{test_meta}: missing; the Ref-YouTube-VOS 'valid' meta ({meta}) also lists the test videos, and this file "
                "says which they are (copy it from the dataset's meta_expressions_test)"
            )
        test_videos = set(load_meta(test_meta))
        videos = {vid: entry for vid, entry in videos.items() if vid not in test_videos}
    return _videos(videos, meta, data_root, split, dataset, with_boxes)


def _videos(videos: Meta, meta: Location, data_root: Location | None, split: str, dataset: str, with_boxes: bool) -> Iterator[Video]:
    for video_id, (names, expressions, groups) in videos.items():
        frames = masks = None
        height = width = 0
        if data_root is not None:
            frame_dir = data_root / split / "JPEGImages" / video_id
            mask_dir = data_root / split / "Annotations" / video_id
            if frame_dir.is_dir():
                frames = ImageFolderFrames(frame_dir, names, ".jpg")
                height, width = frames.size()
            if mask_dir.is_dir():
                masks = IndexPngMasks(mask_dir, names)
        video = Video(
            dataset=dataset,
            split=split,
            video_id=video_id,
            frame_names=names,
            height=height,
            width=width,
            expressions=expressions,
            frames=frames,
            masks=masks,
            annotation_file=meta,
            groups=groups,
        )
        yield attach_boxes(video) if with_boxes else video


def read_ref_youtube_vos(root: str | Path, split: str | None = None, with_boxes: bool = True) -> Iterator[Video]:
    """Ref-YouTube-VOS (default split "valid": its 202 videos, the test meta's videos dropped)."""
    return read_referformer_layout(root, split, with_boxes, dataset="ref-youtube-vos", drop_test_from_valid=True)


def read_refshapes(root: str | Path, split: str | None = None, with_boxes: bool = True) -> Iterator[Video]:
    """The synthetic RefShapes benchmark (written in this layout, masks for every split, type tags, sentences about
    several objects)."""
    return read_referformer_layout(root, split, with_boxes, dataset="refshapes", several_objects=True)
