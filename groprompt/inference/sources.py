"""Input videos: finding them (files, frame folders, lists of paths) and decoding their frames one at a time."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from groprompt.errors import DataError

CONTAINER_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".gif", ".mpg", ".mpeg", ".ts", ".wmv", ".flv"})
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
DEFAULT_FPS = 10.0  # frame folders and containers without a known rate


@dataclass(frozen=True)
class VideoSource:
    """One input video: a container file (``kind="container"``) or a folder of frames (``kind="folder"``)."""

    name: str
    path: str
    kind: str


def video_source(path: str | Path) -> VideoSource:
    """The video at ``path``: a container file (any suffix PyAV may read) or a folder holding images."""
    path = Path(path)
    if path.is_dir():
        return VideoSource(path.name, str(path.resolve()), "folder")
    return VideoSource(path.stem, str(path.resolve()), "container")


def discover_videos(videos: str | Path | Sequence[str | Path]) -> list[VideoSource]:
    """The videos named by ``videos``: a folder of video files and/or frame folders, a folder of frames (one
    video), a ``.txt`` list of paths (one a line, relative to the list), or a sequence of such paths.

    Paths that do not exist are kept (as containers): reading them fails later and is recorded per video.
    Two videos with the same name are an error.
    """
    paths = _video_paths(Path(videos)) if isinstance(videos, (str, Path)) else [Path(p) for p in videos]
    sources = [video_source(p) for p in paths]
    names = [s.name for s in sources]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DataError(f"several videos share the names {duplicates}; rename them or list them separately")
    return sources


def _video_paths(root: Path) -> list[Path]:
    """The paths one ``--videos`` argument stands for: a list file's lines, a folder's videos, or itself."""
    if root.is_file() and root.suffix.lower() == ".txt":
        lines = [line.strip() for line in root.read_text().splitlines()]
        return [root.parent / line for line in lines if line and not line.startswith("#")]
    if root.is_dir() and not _is_frame_folder(root):
        return sorted(p for p in root.iterdir() if not p.name.startswith(".") and (_is_container(p) or _is_frame_folder(p)))
    return [root]


def _is_container(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in CONTAINER_SUFFIXES


def _is_frame_folder(path: Path) -> bool:
    return path.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir() if p.is_file())


def iter_frames(source: VideoSource | str | Path) -> Iterator[tuple[str, np.ndarray]]:
    """Yield (frame name, HxWx3 uint8 RGB frame) one at a time; names are ``00000``... for containers and the
    file stems for frame folders (sorted). Raises ``DataError`` naming the file when it cannot be read."""
    if not isinstance(source, VideoSource):
        source = video_source(source)
    path = Path(source.path)
    if source.kind == "folder":
        yield from _iter_folder(path)
    else:
        yield from _iter_container(path)


def _iter_container(path: Path) -> Iterator[tuple[str, np.ndarray]]:
    """Frames decoded by PyAV from the first video stream."""
    import av

    if not path.is_file():
        raise DataError(f"{path}: video file not found")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as error:
        raise DataError(f"{path}: not a readable video ({error})") from error
    with container:
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


def _iter_folder(path: Path) -> Iterator[tuple[str, np.ndarray]]:
    """The folder's images in name order, read by Pillow and converted to RGB."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_dir():
        raise DataError(f"{path}: frame folder not found")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    for file in files:
        try:
            with Image.open(file) as image:
                frame = np.asarray(image.convert("RGB"))
        except (UnidentifiedImageError, OSError) as error:
            raise DataError(f"{file}: unreadable frame ({error})") from error
        yield file.stem, frame


def video_fps(source: VideoSource, default: float = DEFAULT_FPS) -> float:
    """The container's average frame rate, else ``default`` (frame folders, unknown rates)."""
    if source.kind != "container":
        return default
    import av

    try:
        with av.open(source.path) as container:
            rate = container.streams.video[0].average_rate
            return float(rate) if rate else default
    except Exception:  # noqa: BLE001 - unreadable videos fail later, with their reason recorded
        return default
