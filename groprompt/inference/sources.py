"""Input videos: finding them (files, frame folders, lists of paths; on local disk or in object storage) and decoding
their frames one at a time."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from groprompt.errors import DataError
from groprompt.files import Location, list_folder, location, open_random

if TYPE_CHECKING:
    import av.container

CONTAINER_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".gif", ".mpg", ".mpeg", ".ts", ".wmv", ".flv"})
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
DEFAULT_FPS = 10.0  # frame folders and containers without a known rate


@dataclass(frozen=True)
class VideoSource:
    """One input video: a container file (``kind="container"``) or a folder of frames (``kind="folder"``)."""

    name: str
    path: str  # an absolute local path or a URI
    kind: str


def video_source(path: str | Path | Location, is_folder: bool | None = None) -> VideoSource:
    """The video at ``path`` (local or a URI): a container file (any suffix PyAV may read) or a folder holding images;
    ``is_folder`` when a listing already said which."""
    path = location(path)
    folder = path.is_dir() if is_folder is None else is_folder
    where = str(path.resolve()) if isinstance(path, Path) else str(path)
    return VideoSource(path.name, where, "folder") if folder else VideoSource(path.stem, where, "container")


def discover_videos(videos: str | Path | Sequence[str | Path]) -> list[VideoSource]:
    """The videos named by ``videos`` (local paths or URIs such as ``s3://bucket/prefix``): a folder or prefix of
    video files and/or frame folders, a folder of frames (one video), a ``.txt`` list of paths or URIs (one a line,
    paths relative to the list), or a sequence of such paths.

    Paths that do not exist are kept (as containers): reading them fails later and is recorded per video.
    Two videos with the same name are an error.
    """
    found = _video_paths(location(videos)) if isinstance(videos, (str, Path)) else [(location(p), None) for p in videos]
    sources = [video_source(path, is_folder) for path, is_folder in found]
    names = [s.name for s in sources]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DataError(f"several videos share the names {duplicates}; rename them or list them separately")
    return sources


def _video_paths(root: Location) -> list[tuple[Location, bool | None]]:
    """The paths one ``--videos`` argument stands for, each with whether it is a frame folder (None: not known yet):
    a list file's lines, a folder's videos, or itself."""
    if root.suffix.lower() == ".txt" and root.is_file():
        lines = [line.strip() for line in root.read_text().splitlines()]
        return [(location(line) if "://" in line else root.parent / line, None) for line in lines if line and not line.startswith("#")]
    if root.is_dir() and not _is_frame_folder(root):
        entries = [(path, folder) for path, folder in list_folder(root) if not path.name.startswith(".")]
        return [
            (path, folder)
            for path, folder in entries
            if (folder and _is_frame_folder(path)) or (not folder and path.suffix.lower() in CONTAINER_SUFFIXES)
        ]
    return [(root, None)]


def _is_frame_folder(path: Location) -> bool:
    return any(not folder and entry.suffix.lower() in IMAGE_SUFFIXES for entry, folder in list_folder(path))


def iter_frames(source: VideoSource | str | Path) -> Iterator[tuple[str, np.ndarray]]:
    """Yield (frame name, HxWx3 uint8 RGB frame) one at a time; names are ``00000``... for containers and the
    file stems for frame folders (sorted). Raises ``DataError`` naming the file when it cannot be read."""
    if not isinstance(source, VideoSource):
        source = video_source(source)
    path = location(source.path)
    if source.kind == "folder":
        yield from _iter_folder(path)
    else:
        yield from _iter_container(path)


def _open_container(path: Location, stack: ExitStack) -> av.container.InputContainer:
    """PyAV's container of a local file, or of an object read by ranged requests (MP4s seek to their index), closed
    with ``stack``."""
    import av

    source = str(path) if isinstance(path, Path) else stack.enter_context(open_random(path))
    return stack.enter_context(av.open(source))


def _iter_container(path: Location) -> Iterator[tuple[str, np.ndarray]]:
    """Frames decoded by PyAV from the first video stream."""
    import av

    if not path.is_file():
        raise DataError(f"{path}: video file not found")
    with ExitStack() as stack:
        try:
            container = _open_container(path, stack)
        except (av.error.FFmpegError, OSError, ValueError) as error:
            raise DataError(f"{path}: not a readable video ({error})") from error
        if not container.streams.video:
            raise DataError(f"{path}: no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        index = 0
        try:
            for frame in container.decode(stream):
                yield f"{index:05d}", frame.to_ndarray(format="rgb24")
                index += 1
        except (av.error.FFmpegError, OSError, ValueError) as error:
            raise DataError(f"{path}: decoding failed after {index} frames ({error})") from error


def _iter_folder(path: Location) -> Iterator[tuple[str, np.ndarray]]:
    """The folder's images in name order, read by Pillow and converted to RGB."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_dir():
        raise DataError(f"{path}: frame folder not found")
    files = [entry for entry, folder in list_folder(path) if not folder and entry.suffix.lower() in IMAGE_SUFFIXES]
    for file in files:
        try:
            with Image.open(file if isinstance(file, Path) else io.BytesIO(file.read_bytes())) as image:
                frame = np.asarray(image.convert("RGB"))
        except (UnidentifiedImageError, OSError) as error:
            raise DataError(f"{file}: unreadable frame ({error})") from error
        yield file.stem, frame


def video_fps(source: VideoSource, default: float = DEFAULT_FPS) -> float:
    """The container's average frame rate, else ``default`` (frame folders, unknown rates)."""
    if source.kind != "container":
        return default
    try:
        with ExitStack() as stack:
            container = _open_container(location(source.path), stack)
            rate = container.streams.video[0].average_rate
            return float(rate) if rate else default
    except Exception:  # noqa: BLE001 - unreadable videos fail later, with their reason recorded
        return default
