"""Broken inputs, built on demand from a copy of the real ref-davis-mini data (nothing binary is kept in the repository).

Each ``SOURCE_CASES`` entry damages one file of a ``short_davis`` copy in one way users meet it, and says what the
refusal must state; ``cut_shard`` and ``edit_shard`` break a written shard behind its manifest's back.

    root = short_davis(shared_data, tmp_path)
    damaged = case.damage(root)          # the file the error must name
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from PIL import Image

from tests.helpers import DAVIS_VIDEOS, mini_davis

BAD_VIDEO = "libby"  # the video the cases damage; the other one ("blackswan") stays good
SHORT_FRAMES = 6  # frames listed per video in a short copy: two 4-frame windows, quick to shard


def short_davis(shared_data: Path, tmp_path: Path, videos: tuple[str, ...] = DAVIS_VIDEOS, frames: int = SHORT_FRAMES) -> Path:
    """``mini_davis`` with only the first ``frames`` frames of each video listed in its meta file."""
    root = mini_davis(shared_data, tmp_path, videos)
    _edit_meta(root, lambda meta: [entry.update(frames=entry["frames"][:frames]) for entry in meta["videos"].values()])
    return root


def meta_file(root: Path) -> Path:
    return root / "meta_expressions/valid/meta_expressions.json"


def frame_file(root: Path, video: str, index: int) -> Path:
    return root / "valid/JPEGImages" / video / f"{_frame_name(root, video, index)}.jpg"


def annotation_file(root: Path, video: str, index: int) -> Path:
    return root / "valid/Annotations" / video / f"{_frame_name(root, video, index)}.png"


# ---------------------------------------------------------------------------------------------- damage to a dataset copy
def truncate_jpeg(root: Path, video: str = BAD_VIDEO, index: int = 3) -> Path:
    """Cut a frame's JPEG to its first half (as an interrupted copy leaves it)."""
    path = frame_file(root, video, index)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def empty_jpeg(root: Path, video: str = BAD_VIDEO, index: int = 3) -> Path:
    """Make a frame's JPEG a zero-byte file."""
    path = frame_file(root, video, index)
    path.write_bytes(b"")
    return path


def shrink_png(root: Path, video: str = BAD_VIDEO, index: int = 2) -> Path:
    """Rewrite an annotation PNG at half its size (palette and ids kept)."""
    path = annotation_file(root, video, index)
    with Image.open(path) as image:
        image.resize((image.width // 2, image.height // 2), Image.NEAREST).save(path)
    return path


def remove_png(root: Path, video: str = BAD_VIDEO, index: int = 2) -> Path:
    """Delete the annotation PNG of a listed frame."""
    path = annotation_file(root, video, index)
    path.unlink()
    return path


def point_at_absent_object(root: Path, video: str = BAD_VIDEO) -> Path:
    """Give a video's first expression an object id that no mask of the video holds."""
    return _edit_meta(root, lambda meta: _first_expression(meta, video).update(obj_id="7"))


def blank_sentence(root: Path, video: str = BAD_VIDEO) -> Path:
    """Make a video's first sentence whitespace only."""
    return _edit_meta(root, lambda meta: _first_expression(meta, video).update(exp="  \t "))


def break_json(root: Path) -> Path:
    """Cut the meta file mid-way (invalid JSON)."""
    path = meta_file(root)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def latin1_sentence(root: Path, video: str = BAD_VIDEO) -> Path:
    """Write one sentence in Latin-1 (a byte that is not UTF-8) into an otherwise UTF-8 meta file."""
    _edit_meta(root, lambda meta: _first_expression(meta, video).update(exp="a caf\u00e9 chair"))
    path = meta_file(root)
    path.write_bytes(path.read_bytes().replace("caf\u00e9".encode(), "caf\u00e9".encode("latin-1")))
    return path


@dataclass(frozen=True)
class BadInput:
    """One way a dataset copy is broken, and what refusing it must say."""

    name: str
    damage: Callable[[Path], Path]  # dataset root -> the damaged file, which the error must name
    problem: str  # regular expression for the problem the error states
    per_video: bool  # True: one video is bad (skip_bad leaves it out); False: the annotation file is (always fatal)


SOURCE_CASES = (
    BadInput("truncated-jpeg", truncate_jpeg, "unreadable image: image file is truncated", per_video=True),
    BadInput("zero-byte-jpeg", empty_jpeg, "unreadable image: empty file", per_video=True),
    BadInput("zero-byte-first-jpeg", partial(empty_jpeg, index=0), "unreadable image: empty file", per_video=True),
    BadInput("wrong-size-png", shrink_png, "annotation is 427x240 pixels, the frames of video 'libby' are 854x480", per_video=True),
    BadInput("missing-png", remove_png, "annotation missing", per_video=True),
    BadInput("object-without-mask", point_at_absent_object, "expression '0' \\(object 7\\): the object has a mask in none", per_video=True),
    BadInput("empty-sentence", blank_sentence, "video 'libby', expression '0': empty sentence", per_video=False),
    BadInput("malformed-json", break_json, "invalid JSON", per_video=False),
    BadInput("non-utf8-sentence", latin1_sentence, "unreadable: 'utf-8' codec can't decode", per_video=False),
)


def case(name: str) -> BadInput:
    """The source case called ``name``."""
    return next(bad for bad in SOURCE_CASES if bad.name == name)


# ---------------------------------------------------------------------------------------------- damage to a written shard
def cut_shard(shard: Path, samples: int) -> Path:
    """Truncate a shard tar at a member boundary: just before the JSON member of sample number ``samples``."""
    with tarfile.open(shard) as tar:
        offsets = [member.offset for member in tar.getmembers() if member.name.endswith(".json")]
    with open(shard, "r+b") as handle:
        handle.truncate(offsets[samples])
    return shard


def edit_shard(shard: Path) -> Path:
    """Rewrite a shard tar with every box of every sample zeroed, members and their order unchanged."""
    with tarfile.open(shard) as tar:
        members = [(member, tar.extractfile(member).read()) for member in tar.getmembers()]
    with tarfile.open(shard, "w", format=tarfile.PAX_FORMAT) as tar:
        for member, payload in members:
            if member.name.endswith(".json"):
                meta = json.loads(payload)
                meta["boxes"] = {obj: [None if box is None else [0.0] * 4 for box in boxes] for obj, boxes in meta["boxes"].items()}
                payload = json.dumps(meta, sort_keys=True).encode()
                member.size = len(payload)
            tar.addfile(member, io.BytesIO(payload))
    return shard


# ---------------------------------------------------------------------------------------------- helpers
def _frame_name(root: Path, video: str, index: int) -> str:
    return json.loads(meta_file(root).read_text())["videos"][video]["frames"][index]


def _first_expression(meta: dict[str, Any], video: str) -> dict[str, Any]:
    return next(iter(meta["videos"][video]["expressions"].values()))


def _edit_meta(root: Path, edit: Callable[[dict[str, Any]], object]) -> Path:
    """Apply ``edit`` to the parsed meta file and write it back; returns the file."""
    path = meta_file(root)
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    return path
