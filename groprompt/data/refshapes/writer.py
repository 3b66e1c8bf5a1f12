"""Writing a RefShapes benchmark in the Ref-YouTube-VOS layout, to a local folder or a bucket prefix, every file
atomically::

<out>/<split>/JPEGImages/<video>/<frame>.jpg
<out>/<split>/Annotations/<video>/<frame>.png      DAVIS palette, object ids 1..n
<out>/<split>/meta.json                            objects, their look and the frames they appear in
<out>/meta_expressions/<split>/meta_expressions.json
                                                   sentences, "obj_id" (["1", "3"]: a sentence about several objects)
                                                   and "type"
<out>/refshapes.json                               the spec; written last, it marks the output complete
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from groprompt.data.refshapes.spec import RefShapesSpec
from groprompt.data.refshapes.video import SyntheticVideo, make_video, video_id
from groprompt.errors import DataError
from groprompt.files import Location, ObjectPath, atomic_path, location, write_text_atomic
from groprompt.mask_io import write_index_png

SPEC_FILE = "refshapes.json"
FORMAT_VERSION = 2  # 2: multi-object (list-valued obj_id) and leaves-frame expressions
JPEG_QUALITY = 90


def split_assignment(spec: RefShapesSpec, valid_fraction: float) -> dict[str, list[str]]:
    """Video ids per split: ``round(videos * valid_fraction)`` random videos go to ``valid`` (train keeps one)."""
    if not 0 <= valid_fraction < 1:
        raise ValueError(f"valid_fraction must lie in [0, 1), got {valid_fraction}")
    n_valid = min(int(round(spec.videos * valid_fraction)), spec.videos - 1)
    valid = set(np.random.default_rng(spec.seed).permutation(spec.videos)[:n_valid].tolist())
    return {
        "train": [video_id(i) for i in range(spec.videos) if i not in valid],
        "valid": [video_id(i) for i in range(spec.videos) if i in valid],
    }


def write_refshapes(
    out_dir: str | os.PathLike[str] | ObjectPath, spec: RefShapesSpec, valid_fraction: float = 0.25, progress: bool = True
) -> dict[str, list[str]]:
    """Write the benchmark under ``out_dir`` (a local folder, or a prefix in object storage) and return the video ids
    per split.

    A complete output with the same spec is left as it is; one with another spec raises DataError. The spec
    file is written last, so an interrupted run is never taken for a complete one and is redone.
    """
    out = location(out_dir)
    splits = split_assignment(spec, valid_fraction)
    record = {
        "format": "refshapes",
        "version": FORMAT_VERSION,
        "spec": asdict(spec),
        "valid_fraction": valid_fraction,
        "splits": splits,
    }
    if _is_complete(out, record):
        return splits
    split_of = {vid: split for split, vids in splits.items() for vid in vids}
    metas: dict[str, dict[str, Any]] = {split: {} for split in splits}
    expressions: dict[str, dict[str, Any]] = {split: {} for split in splits}
    for index in tqdm(range(spec.videos), desc="RefShapes", unit="video", disable=not progress):
        video = make_video(spec, index)
        split = split_of[video.video_id]
        _write_video(out / split, video)
        metas[split][video.video_id] = _meta_entry(video)
        expressions[split][video.video_id] = _expressions_entry(video)
    for split in splits:
        _write_json(out / split / "meta.json", {"videos": metas[split]})
        _write_json(out / "meta_expressions" / split / "meta_expressions.json", {"videos": expressions[split]})
    _write_json(out / SPEC_FILE, record)
    return splits


def _is_complete(out: Location, record: dict[str, Any]) -> bool:
    """Whether ``out`` already holds this exact output; DataError when it holds a different one."""
    path = out / SPEC_FILE
    if not path.is_file():
        return False
    try:
        stored = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise DataError(f"{path}: unreadable RefShapes spec file: {error}") from error
    if stored != json.loads(json.dumps(record)):
        raise DataError(
            f"{out}: holds RefShapes generated with {stored.get('spec')}, valid_fraction {stored.get('valid_fraction')}; "
            f"asked for {record['spec']}, valid_fraction {record['valid_fraction']}: choose another folder or prefix, or delete it"
        )
    return True


def _write_video(split_dir: Location, video: SyntheticVideo) -> None:
    """The video's JPEG frames and palette PNG masks under ``split_dir``."""
    frame_dir = split_dir / "JPEGImages" / video.video_id
    mask_dir = split_dir / "Annotations" / video.video_id
    for name, frame, ids in zip(video.frame_names, video.frames, video.ids):
        with atomic_path(frame_dir / f"{name}.jpg") as temporary:
            Image.fromarray(frame).save(temporary, format="JPEG", quality=JPEG_QUALITY)
        write_index_png(mask_dir / f"{name}.png", ids)


def _meta_entry(video: SyntheticVideo) -> dict[str, Any]:
    """The Ref-YouTube-VOS ``meta.json`` entry: per object its category (shape), look, motion and frames present."""
    objects = {}
    for obj in video.objects:
        present = (video.ids == obj.obj_id).any(axis=(1, 2))
        objects[str(obj.obj_id)] = {
            "category": obj.shape,
            "colour": obj.colour,
            "size": obj.size,
            "motion": obj.motion,
            "frames": [name for name, here in zip(video.frame_names, present) if here],
        }
    return {"objects": objects}


def _expressions_entry(video: SyntheticVideo) -> dict[str, Any]:
    """The ``meta_expressions.json`` entry of one video: a group target is written as the list of its objects' ids."""
    return {
        "expressions": {e.exp_id: {"exp": e.text, "obj_id": _written_obj_id(video, e.obj_id), "type": e.kind} for e in video.expressions},
        "frames": list(video.frame_names),
    }


def _written_obj_id(video: SyntheticVideo, target: int | None) -> str | list[str]:
    """An expression's ``obj_id`` in the meta: its object's id, or the ids of a group's objects."""
    members = video.groups.get(target)
    return str(target) if members is None else [str(obj) for obj in members]


def _write_json(path: Location, payload: dict[str, Any]) -> None:
    """Write compact JSON atomically."""
    write_text_atomic(path, json.dumps(payload))
