"""WebDataset frame shards: planning, writing one shard atomically, checking and reading shards safely.

A shard is a tar of samples; a sample is one window of one video, with members
``<key>.json`` (expressions, object ids, types, per-frame boxes in original pixels of every target and of each group
target's objects; ``groups``, the objects of each group target, only for a video whose sentences refer to several
objects: ``sample_groups``),
``<key>.<i>.jpg`` (frame i of the window, longest side capped) and, in evaluation shards only,
``<key>.<i>.png`` (the frame's object-id mask at original size). Member names never hold a path.

Writing decodes and checks every frame and annotation of a video before storing any of it (``check_video`` makes the
same checks and writes nothing); ``check_shard``
refuses a shard (frame or embedding shard) whose file is not the one its manifest row describes.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import re
import tarfile
from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image

from groprompt.data.formats import read_videos
from groprompt.data.formats.common import decoded_image, image_bytes
from groprompt.data.records import BoxXYXY, Video, check_objects_annotated, checked_mask, frame_boxes
from groprompt.errors import DataError
from groprompt.files import Location, atomic_path, file_size, fingerprint, location, open_input, sha256_file, write_json_atomic

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
        groups = [(v.video_id, sorted(v.groups.items())) for v, _, _ in self.windows if v.groups]  # only then: other plans keep theirs
        grouped = {"groups": groups, "boxes": "targets and group members"} if groups else {}
        return fingerprint({"windows": content, "settings": asdict(settings), **grouped})


@dataclass
class ShardSample:
    """One sample read back from a shard; frames and masks stay encoded until asked for."""

    key: str
    meta: dict[str, Any]
    frames: list[bytes] = field(default_factory=list)
    masks: list[bytes] = field(default_factory=list)
    shard: Location | None = None  # the tar it came from (named in errors)

    def frame(self, index: int) -> np.ndarray:
        """Frame ``index`` as RGB uint8 (H, W, 3); a ``DataError`` naming the member when it does not decode."""
        with self._opened(self.frames[index], f"{index:04d}.jpg") as image:
            return np.asarray(image.convert("RGB"))

    def mask(self, index: int) -> np.ndarray:
        """Mask ``index`` as an (H, W) int32 id map; a ``DataError`` naming the member when it does not decode."""
        with self._opened(self.masks[index], f"{index:04d}.png") as image:
            return np.asarray(image, dtype=np.int32)

    @contextmanager
    def _opened(self, payload: bytes, suffix: str) -> Iterator[Image.Image]:
        try:
            with Image.open(io.BytesIO(payload)) as image:
                yield image
        except (OSError, SyntaxError, ValueError) as error:
            raise DataError(f"{self.shard or 'shard'}: member {self.key}.{suffix} does not decode: {error}") from error


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


def shard_videos(format: str, root: str | Path, split: str | None) -> list[Video]:
    """The videos the shard stage reads from a split (masks are read as shards are written); a ``DataError`` naming the
    root when there is none."""
    videos = list(read_videos(format, root, split, with_boxes=False))
    if not videos:
        raise DataError(f"{root}: no videos for format {format}, split {split}")
    return videos


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


def write_shard(plan: ShardPlan, out_dir: str | Location, settings: ShardSettings, skip_bad: bool = False) -> dict[str, Any]:
    """Write one shard (tar, then a JSON record) atomically, or reuse it if it exists and verifies.

    Every frame and annotation of a video is decoded and checked before any of its windows is written (see
    ``_video_members``). A bad video raises ``DataError`` naming the file, and nothing is left behind; with
    ``skip_bad`` it is left out whole and listed in the record's ``rejected`` (by the shard holding its first window).
    """
    out_dir = location(out_dir)
    target, record_path = out_dir / plan.name, out_dir / f"{plan.name}.json"
    expected = plan.fingerprint(settings)
    existing = verified_record(target, record_path, expected)
    if existing is not None:
        return existing
    samples, frames, rejected = [], 0, []
    with atomic_path(target) as temporary:
        with tarfile.open(temporary, "w", format=tarfile.PAX_FORMAT) as tar:
            for video, windows in _windows_by_video(plan):
                try:
                    members = _video_members(video, windows, settings)
                except DataError as error:
                    if not skip_bad:
                        raise
                    if windows[0][0] == 0:
                        rejected.append({"video": video.video_id, "reason": str(error)})
                    continue
                for name, payload in members:
                    add_member(tar, name, payload)
                samples += [sample_key(video, start) for start, _ in windows]
                frames += sum(end - start for start, end in windows)
        size, digest = temporary.stat().st_size, sha256_file(temporary)
    record = {
        "shard": plan.name,
        "samples": samples,
        "n_samples": len(samples),
        "n_frames": frames,
        "bytes": size,
        "sha256": digest,
        "fingerprint": expected,
        "rejected": sorted(rejected, key=lambda r: r["video"]),
    }
    write_json_atomic(record_path, record)
    return record


def verified_record(target: Location, record_path: Location, expected_fingerprint: str) -> dict[str, Any] | None:
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


@dataclass(frozen=True)
class _StoredFrame:
    """What a sample keeps of one checked frame: its JPEG, its boxes, whether it is annotated, its mask PNG."""

    jpeg: bytes
    boxes: dict[int, BoxXYXY | None]
    annotated: bool
    png: bytes | None  # evaluation shards only


def _windows_by_video(plan: ShardPlan) -> Iterator[tuple[Video, list[tuple[int, int]]]]:
    """The plan's windows grouped by video, in order: (video, [(first frame, end frame), ...])."""
    for _, group in itertools.groupby(plan.windows, key=lambda window: window[0].video_id):
        windows = list(group)
        yield windows[0][0], [(start, end) for _, start, end in windows]


def _video_members(video: Video, windows: list[tuple[int, int]], settings: ShardSettings) -> list[tuple[str, bytes]]:
    """The members of some windows of a video, after checking the WHOLE video (``_checked_video``): a video cut
    between two shards is kept or refused alike in both."""
    stored = _checked_video(video, settings, {t for start, end in windows for t in range(start, end)})
    return [member for start, end in windows for member in _sample_members(video, start, [stored[t] for t in range(start, end)], settings)]


def check_video(video: Video) -> None:
    """Refuse, with the ``DataError`` that writing its shards would raise (naming the file and the problem), a video the
    shard stage cannot store; decodes every frame and annotation and keeps nothing (the checks do not depend on the
    layout, ``ShardSettings``)."""
    _checked_video(video, ShardSettings(), frozenset())


def shard_refusals(videos: Iterable[Video]) -> Iterator[DataError]:
    """The refusal of each video the shard stage would refuse (``--skip-bad`` would leave out), in order."""
    for video in videos:
        try:
            check_video(video)
        except DataError as error:
            yield error


def _checked_video(video: Video, settings: ShardSettings, wanted: Container[int]) -> dict[int, _StoredFrame]:
    """Decode and check every frame and annotation of the WHOLE video, a ``DataError`` naming the file otherwise: an id
    that cannot name a shard member, a frame or mask that does not decode, a size that is not the video's, an
    expression whose object is in no annotated frame. Returns the stored form of the frames ``wanted``."""
    sample_key(video, 0)
    if video.frames is None:
        raise DataError(f"{video.describe()}: no frames on disk")
    stored: dict[int, _StoredFrame] = {}
    boxes: dict[int, list[BoxXYXY | None]] = {obj: [] for obj in video.boxed_ids}
    for t in range(len(video.frame_names)):
        jpeg = _checked_frame(video, t, settings, keep=t in wanted)
        ids = checked_mask(video, t)
        found = frame_boxes(ids, video.boxed_ids, video.groups)
        for obj, box in found.items():
            boxes[obj].append(box)
        if t in wanted:
            png = _encoded_mask(ids, video.height, video.width) if settings.with_masks else None
            stored[t] = _StoredFrame(jpeg, found, ids is not None, png)
    check_objects_annotated(video, boxes)
    return stored


def _sample_members(video: Video, start: int, frames: list[_StoredFrame], settings: ShardSettings) -> Iterator[tuple[str, bytes]]:
    """The members of one window (its checked frames from ``start``), meta first."""
    key = sample_key(video, start)
    h, w = stored_size(video.height, video.width, settings.max_side)
    meta = {
        "key": key,
        "dataset": video.dataset,
        "split": video.split,
        "video_id": video.video_id,
        "start": start,
        "frame_names": list(video.frame_names[start : start + len(frames)]),
        "height": video.height,
        "width": video.width,
        "stored_height": h,
        "stored_width": w,
        "expressions": [asdict(e) for e in video.expressions],
        "boxes": {str(obj): [_as_list(frame.boxes[obj]) for frame in frames] for obj in video.boxed_ids},
        "annotated": [frame.annotated for frame in frames],
        "has_masks": settings.with_masks,
    }
    if video.groups:  # absent otherwise, so that the samples of other benchmarks stay as they were
        meta["groups"] = {str(group): list(members) for group, members in video.groups.items()}
    yield f"{key}.json", json.dumps(meta, sort_keys=True).encode()
    for i, frame in enumerate(frames):
        yield f"{key}.{i:04d}.jpg", frame.jpeg
    if settings.with_masks:
        for i, frame in enumerate(frames):
            yield f"{key}.{i:04d}.png", frame.png


def sample_groups(meta: Mapping[str, Any]) -> dict[int, tuple[int, ...]]:
    """A sample's group targets and the object ids of each (``groprompt.data.records.target_mask``); {} when it has none."""
    return {int(group): tuple(int(obj) for obj in members) for group, members in meta.get("groups", {}).items()}


def _as_list(box: tuple[float, ...] | None) -> list[float] | None:
    return None if box is None else list(box)


def _checked_frame(video: Video, index: int, settings: ShardSettings, keep: bool) -> bytes:
    """Decode frame ``index`` and check its size against the video's (a ``DataError`` names the file otherwise);
    its JPEG bytes for the shard when ``keep`` (else b""): the source file's own bytes when it is a JPEG that
    needs no resizing, else the decoded frame re-encoded at the stored size."""
    h, w = stored_size(video.height, video.width, settings.max_side)
    source = video.frames.file(index)
    original = rgb = None
    if source.suffix.lower() in (".jpg", ".jpeg") and (h, w) == (video.height, video.width):
        original = image_bytes(source)
        with decoded_image(original, source) as image:
            size = image.height, image.width
    else:
        rgb = video.frames.read(index)
        size = rgb.shape[:2]
    if size != (video.height, video.width):
        raise DataError(
            f"{source}: frame {video.frame_names[index]} is {size[1]}x{size[0]} pixels, "
            f"the video's first readable frame is {video.width}x{video.height}"
        )
    if not keep:
        return b""
    return original if original is not None else _encoded_jpeg(rgb, (h, w), settings.jpeg_quality)


def _encoded_jpeg(rgb: np.ndarray, size: tuple[int, int], quality: int) -> bytes:
    """JPEG bytes of an RGB frame resized to ``size`` (h, w) when it has another size."""
    image = Image.fromarray(rgb)
    if size != rgb.shape[:2]:
        image = image.resize((size[1], size[0]), Image.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _encoded_mask(ids: np.ndarray | None, height: int, width: int) -> bytes:
    """PNG bytes of an object-id map; an unannotated frame is stored as 255 everywhere."""
    array = np.full((height, width), 255, np.uint8) if ids is None else ids.astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def check_member_name(shard: Location, member: tarfile.TarInfo) -> None:
    """Refuse anything but a plain file whose name is a bare ``key.ext`` (no folders, no ``..``)."""
    if not member.isreg() or not _SAFE_NAME.fullmatch(member.name):
        raise DataError(f"{shard}: refusing member {member.name!r} (not a plain file with a safe name)")


class _HashingReader:
    """A binary stream that hashes (sha256) what is read through it."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream, self.digest = stream, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        block = self.stream.read(size)
        self.digest.update(block)
        return block

    def drain(self) -> str:
        """Read the rest of the stream (a tar's end padding) and return the hex digest of all of it."""
        while self.read(1 << 20):
            pass
        return self.digest.hexdigest()


def iter_members(path: Location, sha256: str | None = None) -> Iterator[tuple[str, str, Callable[[], bytes]]]:
    """``(key, extension, read)`` for each member of a shard tar, streamed in order (from object storage too).

    Every member is checked first (``check_member_name``); a broken tar is a ``DataError`` naming the file. With
    ``sha256`` the stream is hashed as it is read, and a file that differs is a ``DataError`` once it ends (before
    the last member is handed out when the caller reads to the end).
    """

    def reader(tar: tarfile.TarFile, member: tarfile.TarInfo) -> Callable[[], bytes]:
        def read() -> bytes:
            try:
                return tar.extractfile(member).read()
            except (tarfile.TarError, OSError) as error:
                raise DataError(f"{path}: member {member.name} is unreadable: {error}") from error

        return read

    try:
        with open_input(path) as raw:
            stream = _HashingReader(raw)
            with tarfile.open(fileobj=stream, mode="r|") as tar:  # type: ignore[arg-type]
                for member in tar:
                    check_member_name(path, member)
                    key, _, extension = member.name.partition(".")
                    yield key, extension, reader(tar, member)
            if sha256 is not None and (digest := stream.drain()) != sha256:
                raise DataError(
                    f"{path}: content differs from the sha256 in its manifest ({digest[:12]}..., not {sha256[:12]}...): changed "
                    "after the manifest was written; re-run the stage that wrote it"
                )
    except tarfile.TarError as error:
        raise DataError(f"{path}: not a readable shard: {error}") from error


def check_shard(path: str | Location, row: Mapping[str, Any], rerun: str) -> None:
    """Refuse a shard tar (frame or embedding shard) that is not the file its manifest ``row`` describes.

    Hashes the file and lists its samples from the member headers in one streamed read. A difference in size,
    sha256 or sample keys is a ``DataError`` naming the tar, each difference and ``rerun``, what re-writes it
    (e.g. "pipelines/shard.py").
    """
    path = location(path)
    if not path.is_file():
        raise DataError(f"{path}: listed in its manifest, but missing; re-run {rerun}")
    size, (digest, keys) = file_size(path), _digest_and_sample_keys(path)
    differences = [f"{size} bytes, not {row['bytes']}"] if size != row["bytes"] else []
    if digest != row["sha256"]:
        differences.append(f"sha256 {digest[:12]}..., not {row['sha256'][:12]}...")
    if keys is None:
        differences.append("not a readable tar")
    elif keys != list(row["samples"]):
        differences.append(f"{len(keys)} samples, not {len(row['samples'])}" if len(keys) != len(row["samples"]) else "other sample keys")
    if differences:
        raise DataError(
            f"{path}: differs from its manifest row ({'; '.join(differences)}): changed or cut short after the manifest "
            f"was written; re-run {rerun}"
        )


def _digest_and_sample_keys(path: Location) -> tuple[str, list[str] | None]:
    """The sha256 of a shard tar and its sample keys in order (from the member headers; None when it is not a tar),
    in one read of the stream."""
    with open_input(path) as raw:
        stream = _HashingReader(raw)
        try:
            with tarfile.open(fileobj=stream, mode="r|") as tar:  # type: ignore[arg-type]
                keys = [member.name.removesuffix(".json") for member in tar if member.name.endswith(".json")]
        except tarfile.TarError:
            keys = None
        return stream.drain(), keys


def read_shard(
    path: str | Location, with_images: bool = True, keys: Container[str] | None = None, sha256: str | None = None
) -> Iterator[ShardSample]:
    """Stream the samples of a shard in order; ``with_images=False`` reads only the JSON members, and with ``keys``
    only the samples of those keys get their frames and masks read (the others come with their JSON alone). With
    ``sha256`` the file is checked against it on the stream (``iter_members``)."""
    path = location(path)
    current: ShardSample | None = None
    for key, extension, read in iter_members(path, sha256):
        if current is not None and key != current.key:
            yield current
            current = None
        if extension == "json":
            try:
                current = ShardSample(key, json.loads(read()), shard=path)
            except json.JSONDecodeError as error:
                raise DataError(f"{path}: sample {key} has unreadable JSON: {error}") from error
            continue
        if current is None:
            raise DataError(f"{path}: member {key}.{extension} comes before its sample's JSON")
        if with_images and (keys is None or key in keys):
            (current.frames if extension.endswith(".jpg") else current.masks).append(read())
    if current is not None:
        yield current
