"""Input videos: finding them (files, frame folders, lists of paths, WebDataset tars of video files; on local disk or in
object storage) and decoding their frames one at a time."""

from __future__ import annotations

import tarfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from groprompt.errors import DataError
from groprompt.files import Location, list_folder, location, open_random, readable

if TYPE_CHECKING:
    import av.container

CONTAINER_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".gif", ".mpg", ".mpeg", ".ts", ".wmv", ".flv"})
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
TAR_SUFFIX = ".tar"
DEFAULT_FPS = 10.0  # frame folders and containers without a known rate


@dataclass(frozen=True)
class VideoSource:
    """One input video: a container file (``kind="container"``), a folder of frames (``kind="folder"``), or a video
    file inside a tar (``kind="tar-member"``: ``path`` is the tar, ``member`` the file's name in it)."""

    name: str
    path: str  # an absolute local path or a URI
    kind: str
    member: str = ""


def video_source(path: str | Path | Location, is_folder: bool | None = None) -> VideoSource:
    """The video at ``path`` (local or a URI): a container file (any suffix PyAV may read) or a folder holding images;
    ``is_folder`` when a listing already said which."""
    path = location(path)
    folder = path.is_dir() if is_folder is None else is_folder
    return VideoSource(path.name, _absolute(path), "folder") if folder else VideoSource(path.stem, _absolute(path), "container")


def _absolute(path: Location) -> str:
    """How a video source names its file: an absolute local path, or the URI."""
    return str(path.resolve()) if isinstance(path, Path) else str(path)


def discover_videos(videos: str | Path | Sequence[str | Path]) -> list[VideoSource]:
    """The videos named by ``videos`` (local paths or URIs such as ``s3://bucket/prefix``): a folder or prefix of
    video files, frame folders and tars, a folder of frames (one video), a ``.txt`` list of paths or URIs (one a
    line, paths relative to the list), a tar (WebDataset style: each video file in it is one video, named by its
    file name without the suffix; other members are ignored), or a sequence of such paths.

    Paths that do not exist are kept (as containers): reading them fails later and is recorded per video.
    Two videos with the same name are an error.
    """
    found = _video_paths(location(videos)) if isinstance(videos, (str, Path)) else [(location(p), None) for p in videos]
    sources = [
        source
        for path, is_folder in found
        for source in (tar_videos(path) if not is_folder and path.suffix.lower() == TAR_SUFFIX else [video_source(path, is_folder)])
    ]
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
            if (folder and _is_frame_folder(path)) or (not folder and path.suffix.lower() in CONTAINER_SUFFIXES | {TAR_SUFFIX})
        ]
    return [(root, None)]


def tar_videos(tar: Location) -> list[VideoSource]:
    """The video files in a tar, in the tar's order (its headers are read; the files' bytes are skipped over)."""
    if not tar.is_file():
        raise DataError(f"{tar}: tar not found")
    try:
        with open_random(tar) as handle, tarfile.open(fileobj=handle, mode="r:") as archive:
            members = [m.name for m in archive if m.isfile() and Path(m.name).suffix.lower() in CONTAINER_SUFFIXES]
    except (tarfile.TarError, OSError) as error:
        raise DataError(f"{tar}: not a readable tar ({error})") from error
    return [VideoSource(Path(name).stem, _absolute(tar), "tar-member", name) for name in members]


def _is_frame_folder(path: Location) -> bool:
    return any(not folder and entry.suffix.lower() in IMAGE_SUFFIXES for entry, folder in list_folder(path))


def iter_frames(source: VideoSource | str | Path) -> Iterator[tuple[str, np.ndarray]]:
    """Yield (frame name, HxWx3 uint8 RGB frame) one at a time; names are ``00000``... for containers and the
    file stems for frame folders (sorted). Raises ``DataError`` naming the file when it cannot be read."""
    if not isinstance(source, VideoSource):
        source = video_source(source)
    if source.kind == "folder":
        yield from _iter_folder(location(source.path))
    else:
        yield from _iter_container(source)


def _open_container(source: VideoSource, stack: ExitStack) -> av.container.InputContainer:
    """PyAV's container of a video file (local, or an object read by ranged requests: MP4s seek to their index) or of
    a video inside a tar (read in place, not extracted), closed with ``stack``."""
    import av

    path = location(source.path)
    if source.kind == "tar-member":
        handle = stack.enter_context(open_random(path))
        archive = stack.enter_context(tarfile.open(fileobj=handle, mode="r:"))  # noqa: SIM115 - the stack closes it
        member = archive.extractfile(source.member)
        if member is None:
            raise DataError(f"{path}: {source.member} is not a file in the tar")
        return stack.enter_context(av.open(member))
    return stack.enter_context(av.open(str(path) if isinstance(path, Path) else stack.enter_context(open_random(path))))


def _iter_container(source: VideoSource) -> Iterator[tuple[str, np.ndarray]]:
    """Frames decoded by PyAV from the first video stream."""
    import av

    path = f"{source.path}:{source.member}" if source.member else source.path
    if not location(source.path).is_file():
        raise DataError(f"{source.path}: video file not found")
    with ExitStack() as stack:
        try:
            container = _open_container(source, stack)
        except (av.error.FFmpegError, OSError, ValueError, tarfile.TarError, KeyError) as error:
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
            with Image.open(readable(file)) as image:
                frame = np.asarray(image.convert("RGB"))
        except (UnidentifiedImageError, OSError) as error:
            raise DataError(f"{file}: unreadable frame ({error})") from error
        yield file.stem, frame


def video_fps(source: VideoSource, default: float = DEFAULT_FPS) -> float:
    """The container's average frame rate, else ``default`` (frame folders, unknown rates)."""
    if source.kind == "folder":
        return default
    try:
        with ExitStack() as stack:
            container = _open_container(source, stack)
            rate = container.streams.video[0].average_rate
            return float(rate) if rate else default
    except Exception:  # noqa: BLE001 - unreadable videos fail later, with their reason recorded
        return default
