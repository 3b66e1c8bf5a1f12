"""WebDataset frame shards: planning, writing one shard atomically, and reading shards safely.

A shard is a tar of samples; a sample is one window of one video, with members
``<key>.json`` (expressions, object ids, types, per-frame boxes in original pixels),
``<key>.<i>.jpg`` (frame i of the window, longest side capped) and, in evaluation shards only,
``<key>.<i>.png`` (the frame's object-id mask at original size). Member names never hold a path.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from groprompt.data.records import Video, tight_box
from groprompt.errors import DataError
from groprompt.files import atomic_path, fingerprint, sha256_file, write_json_atomic

_SAFE_NAME = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)+$")
_JPEG_BYTES_PER_PIXEL = 0.15  # planning estimate for quality-90 JPEG


@dataclass(frozen=True)
class ShardSettings:
    """How videos become shards; part of every shard's fingerprint."""

    window: int = 36
    max_side: int = 1024
    shard_bytes: int = 256 * 1024 * 1024
    with_masks: bool = False  # evaluation shards carry masks; training shards never do
    jpeg_quality: int = 90


@dataclass(frozen=True)
class ShardPlan:
    """Which windows of which videos go into shard ``index``."""

    index: int
    windows: tuple[tuple[Video, int, int], ...]  # (video, first frame, end frame)

    @property
    def name(self) -> str:
        return f"shard-{self.index:06d}.tar"

    def fingerprint(self, settings: ShardSettings) -> str:
        content = [(v.dataset, v.split, v.video_id, v.frame_names[a:b], [asdict(e) for e in v.expressions]) for v, a, b in self.windows]
        return fingerprint({"windows": content, "settings": asdict(settings)})


@dataclass
class ShardSample:
    """One sample read back from a shard; frames and masks stay encoded until asked for."""

    key: str
    meta: dict[str, Any]
    frames: list[bytes] = field(default_factory=list)
    masks: list[bytes] = field(default_factory=list)

    def frame(self, index: int) -> np.ndarray:
        with Image.open(io.BytesIO(self.frames[index])) as image:
            return np.asarray(image.convert("RGB"))

    def mask(self, index: int) -> np.ndarray:
        with Image.open(io.BytesIO(self.masks[index])) as image:
            return np.asarray(image, dtype=np.int32)


def sample_key(video: Video, start: int) -> str:
    """``<video>__<start>``; a video id that cannot be a member-name stem is an error."""
    key = f"{video.video_id}__{start:05d}"
    if not re.fullmatch(r"[A-Za-z0-9_\-]+", key):
        raise DataError(f"video {video.video_id!r}: id has characters not allowed in a shard member name")
    return key


def stored_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """Frame size after capping the longest side at ``max_side`` (never upscaled)."""
    scale = min(1.0, max_side / max(height, width, 1))
    return max(1, round(height * scale)), max(1, round(width * scale))


def plan_shards(videos: list[Video], settings: ShardSettings) -> list[ShardPlan]:
    """Cut videos into windows and pack them, in order, into shards of about ``shard_bytes``."""
    plans: list[ShardPlan] = []
    current: list[tuple[Video, int, int]] = []
    current_bytes = 0.0
    for video in videos:
        h, w = stored_size(video.height, video.width, settings.max_side)
        per_frame = h * w * 3 * _JPEG_BYTES_PER_PIXEL + (video.height * video.width * 0.05 if settings.with_masks else 0)
        for start in range(0, len(video.frame_names), settings.window):
            end = min(start + settings.window, len(video.frame_names))
            if current and current_bytes + per_frame * (end - start) > settings.shard_bytes:
                plans.append(ShardPlan(len(plans), tuple(current)))
                current, current_bytes = [], 0.0
            current.append((video, start, end))
            current_bytes += per_frame * (end - start)
    if current:
        plans.append(ShardPlan(len(plans), tuple(current)))
    return plans


def write_shard(plan: ShardPlan, out_dir: str | Path, settings: ShardSettings, skip_bad: bool = False) -> dict[str, Any]:
    """Write one shard (tar, then a JSON record) atomically, or reuse it if it exists and verifies.

    Returns the shard's manifest row plus ``rejected`` (videos left out with ``skip_bad``).
    An unreadable frame or mask raises ``DataError`` naming the file unless ``skip_bad``.
    """
    out_dir = Path(out_dir)
    target, record_path = out_dir / plan.name, out_dir / f"{plan.name}.json"
    expected = plan.fingerprint(settings)
    existing = verified_record(target, record_path, expected)
    if existing is not None:
        return existing
    samples, frames, rejected = [], 0, []
    with atomic_path(target) as temporary, tarfile.open(temporary, "w", format=tarfile.PAX_FORMAT) as tar:
        for video, start, end in plan.windows:
            try:
                members = list(_sample_members(video, start, end, settings))
            except DataError as error:
                if not skip_bad:
                    raise
                rejected.append({"video": video.video_id, "reason": str(error)})
                continue
            for name, payload in members:
                add_member(tar, name, payload)
            samples.append(sample_key(video, start))
            frames += end - start
    record = {
        "shard": plan.name,
        "samples": samples,
        "n_samples": len(samples),
        "n_frames": frames,
        "bytes": target.stat().st_size,
        "sha256": sha256_file(target),
        "fingerprint": expected,
        "rejected": sorted(rejected, key=lambda r: r["video"]),
    }
    write_json_atomic(record_path, record)
    return record


def verified_record(target: Path, record_path: Path, expected_fingerprint: str) -> dict[str, Any] | None:
    """The stored record of a complete shard whose plan and content still match, else None."""
    if not (target.is_file() and record_path.is_file()):
        return None
    try:
        record = json.loads(record_path.read_text())
    except json.JSONDecodeError:
        return None
    if record.get("fingerprint") != expected_fingerprint or record.get("sha256") != sha256_file(target):
        return None
    return record


def add_member(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(payload), 0, 0o644
    tar.addfile(info, io.BytesIO(payload))


def _sample_members(video: Video, start: int, end: int, settings: ShardSettings) -> Iterator[tuple[str, bytes]]:
    """The members of one window, meta first; reading every frame and mask up front (errors name files)."""
    key = sample_key(video, start)
    frames = [_encoded_frame(video, t, settings) for t in range(start, end)]
    id_maps = [video.masks.read(t) if video.masks is not None else None for t in range(start, end)]
    objects = video.object_ids
    boxes = {
        str(obj): [None if ids is None else _as_list(tight_box(ids == obj)) for ids in id_maps] for obj in objects
    }
    h, w = stored_size(video.height, video.width, settings.max_side)
    meta = {
        "key": key,
        "dataset": video.dataset,
        "split": video.split,
        "video_id": video.video_id,
        "start": start,
        "frame_names": list(video.frame_names[start:end]),
        "height": video.height,
        "width": video.width,
        "stored_height": h,
        "stored_width": w,
        "expressions": [asdict(e) for e in video.expressions],
        "boxes": boxes,
        "annotated": [ids is not None for ids in id_maps],
        "has_masks": settings.with_masks,
    }
    yield f"{key}.json", json.dumps(meta, sort_keys=True).encode()
    for i, payload in enumerate(frames):
        yield f"{key}.{i:04d}.jpg", payload
    if settings.with_masks:
        for i, ids in enumerate(id_maps):
            yield f"{key}.{i:04d}.png", _encoded_mask(ids, video.height, video.width)


def _as_list(box: tuple[float, ...] | None) -> list[float] | None:
    return None if box is None else list(box)


def _encoded_frame(video: Video, index: int, settings: ShardSettings) -> bytes:
    """JPEG bytes of a frame: the source file's own bytes when it is a JPEG that needs no resizing."""
    if video.frames is None:
        raise DataError(f"video {video.video_id}: no frames on disk")
    h, w = stored_size(video.height, video.width, settings.max_side)
    source = video.frames.path(index) if hasattr(video.frames, "path") else None
    if source is not None and source.suffix.lower() in (".jpg", ".jpeg") and (h, w) == (video.height, video.width):
        try:
            return Path(source).read_bytes()
        except OSError as error:
            raise DataError(f"{source}: unreadable frame: {error}") from error
    rgb = video.frames.read(index)
    image = Image.fromarray(rgb)
    if (h, w) != rgb.shape[:2]:
        image = image.resize((w, h), Image.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=settings.jpeg_quality)
    return buffer.getvalue()


def _encoded_mask(ids: np.ndarray | None, height: int, width: int) -> bytes:
    """PNG bytes of an object-id map; an unannotated frame is stored as 255 everywhere."""
    array = np.full((height, width), 255, np.uint8) if ids is None else ids.astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def check_member_name(shard: Path, member: tarfile.TarInfo) -> None:
    """Refuse anything but a plain file whose name is a bare ``key.ext`` (no folders, no ``..``)."""
    if not member.isreg() or not _SAFE_NAME.fullmatch(member.name):
        raise DataError(f"{shard}: refusing member {member.name!r} (not a plain file with a safe name)")


def iter_members(path: Path) -> Iterator[tuple[str, str, Callable[[], bytes]]]:
    """``(key, extension, read)`` for each member of a shard tar, streamed in order.

    Every member is checked first (``check_member_name``); a broken tar is a ``DataError`` naming the file.
    """

    def reader(tar: tarfile.TarFile, member: tarfile.TarInfo) -> Callable[[], bytes]:
        def read() -> bytes:
            try:
                return tar.extractfile(member).read()
            except (tarfile.TarError, OSError) as error:
                raise DataError(f"{path}: member {member.name} is unreadable: {error}") from error

        return read

    try:
        with tarfile.open(path, "r|") as tar:
            for member in tar:
                check_member_name(path, member)
                key, _, extension = member.name.partition(".")
                yield key, extension, reader(tar, member)
    except tarfile.TarError as error:
        raise DataError(f"{path}: not a readable shard: {error}") from error


def read_shard(path: str | Path, with_images: bool = True) -> Iterator[ShardSample]:
    """Stream the samples of a shard in order; ``with_images=False`` reads only the JSON members."""
    path = Path(path)
    current: ShardSample | None = None
    for key, extension, read in iter_members(path):
        if current is not None and key != current.key:
            yield current
            current = None
        if extension == "json":
            try:
                current = ShardSample(key, json.loads(read()))
            except json.JSONDecodeError as error:
                raise DataError(f"{path}: sample {key} has unreadable JSON: {error}") from error
            continue
        if current is None:
            raise DataError(f"{path}: member {key}.{extension} comes before its sample's JSON")
        if with_images:
            (current.frames if extension.endswith(".jpg") else current.masks).append(read())
    if current is not None:
        yield current
