"""A2D-Sentences, as laid out after the standard (MTTR / ReferFormer) preparation.

    <root>/Release/clips320H/<video>.mp4
    <root>/Release/videoset.csv          no header: video id, label, start time, end time, height, width,
                                         number of frames, number of annotated frames, split (0 train, 1 test)
    <root>/text_annotations/a2d_annotation.txt                     CSV video_id,instance_id,query
    <root>/text_annotations/a2d_annotation_with_instances/<video>/<frame:05d>.h5
        "instance": the A2D instance ids in the frame; "reMask": their masks, written by MATLAB, so stored
        transposed: (N, W, H), or (W, H) when the frame has one instance.

Conventions (those of MTTR's ``a2d_sentences_dataset.py``):
- Frames are the mp4's decoded frames in order; A2D frame numbers (the .h5 names) are 1-based, so frame name
  "00001" is the first decoded frame, index 0. Only frames with an .h5 file are annotated.
- A2D instance ids start at 0, which id maps reserve for the background: ``obj_id = instance_id + 1``, and
  ``Expression.exp_id`` keeps the original instance id text.
- One row of the released annotation file has instance id "1 (copy)" (video T6bNPuKV-wY, a sentence that
  matches none of its instances; MTTR drops it): it is kept with ``obj_id=None``, like a sentence whose target is
  not published, so the counts match the file (6,655 sentences).
- Split: "test" by default when videoset.csv is present ("train"/"test" select by its last column); without
  videoset.csv (for example ``root`` = the annotation file itself) every sentence is read, split "all".
  A2D-Sentences has no validation split: training validates on held-out "train" videos ("train-holdout").
- ``root`` may be local or in object storage (``groprompt.files.location``): the mp4s are decoded with ranged reads,
  each .h5 is read whole into memory.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from groprompt.data.formats.common import attach_boxes
from groprompt.data.records import Expression, Video
from groprompt.errors import DataError
from groprompt.files import Location, file_version, list_folder, location, open_random, readable

ANNOTATION = Path("text_annotations", "a2d_annotation.txt")
VIDEOSET = Path("Release", "videoset.csv")
CLIPS = Path("Release", "clips320H")
INSTANCE_MASKS = Path("text_annotations", "a2d_annotation_with_instances")
SPLITS = {"train": 0, "test": 1}
TEST_SPLITS = frozenset({"test", "all"})  # "all" (read without videoset.csv) holds the test videos too
_COPY_MISTAKE = re.compile(r"^\d+ \(copy\)$")


# ---------------------------------------------------------------------------------------------- annotations
def _csv_rows(path: Location) -> list[list[str]]:
    """The rows of a UTF-8 CSV file (read whole; quoted fields may hold line breaks)."""
    return list(csv.reader(io.StringIO(path.read_bytes().decode("utf-8"), newline="")))


def load_sentences(path: Location) -> dict[str, list[Expression]]:
    """Parse a2d_annotation.txt: video id -> its sentences, in file order."""
    try:
        rows = _csv_rows(path)
    except FileNotFoundError:
        raise DataError(f"{path}: missing (expected the A2D-Sentences annotation CSV)") from None
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"{path}: unreadable CSV: {error}") from error
    if not rows or [cell.strip() for cell in rows[0]] != ["video_id", "instance_id", "query"]:
        raise DataError(f"{path}: expected the header video_id,instance_id,query")
    videos: dict[str, list[Expression]] = {}
    seen: set[tuple[str, str]] = set()
    for line, row in enumerate(rows[1:], start=2):
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) != 3:
            raise DataError(f"{path}: line {line}: expected 3 columns (video_id,instance_id,query), got {len(row)}")
        video_id, instance, query = (cell.strip() for cell in row)
        if not video_id or not query:
            raise DataError(f"{path}: line {line}: empty video id or query")
        if instance.isdigit():
            obj_id = int(instance) + 1
        elif _COPY_MISTAKE.match(instance):
            obj_id = None  # a known mistake of the release: the sentence names none of the video's instances
        else:
            raise DataError(f"{path}: line {line}: instance id {instance!r} is not a non-negative integer")
        if (video_id, instance) in seen:
            raise DataError(f"{path}: line {line}: video {video_id} instance {instance} appears twice")
        seen.add((video_id, instance))
        videos.setdefault(video_id, []).append(Expression(exp_id=instance, text=query, obj_id=obj_id))
    return videos


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """One row of videoset.csv (the columns this reader uses)."""

    frames: int
    split: int


def load_videoset(path: Location) -> dict[str, VideoInfo]:
    """Parse Release/videoset.csv (no header, 9 columns; the last is 0 = train, 1 = test)."""
    try:
        rows = _csv_rows(path)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"{path}: unreadable CSV: {error}") from error
    info = {}
    for line, row in enumerate(rows, start=1):
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) != 9:
            raise DataError(f"{path}: line {line}: expected 9 columns, got {len(row)}")
        try:
            frames, split = int(float(row[6])), int(float(row[8]))
        except ValueError:
            raise DataError(f"{path}: line {line}: frame count {row[6]!r} or split {row[8]!r} is not a number") from None
        if split not in SPLITS.values():
            raise DataError(f"{path}: line {line}: split flag {split} is neither 0 (train) nor 1 (test)")
        info[row[0].strip()] = VideoInfo(frames=frames, split=split)
    return info


# ---------------------------------------------------------------------------------------------- frames (mp4)
class _Cursor:
    """An open decoder positioned after frame ``next - 1``: sequential reads decode each frame once."""

    def __init__(self, path: Location):
        import av

        self.path = path
        self.file = open_random(path)
        try:
            self.container = av.open(self.file)
        except BaseException:
            self.file.close()
            raise
        self.decoded = self.container.decode(video=0)
        self.next = 0

    def read(self, index: int) -> np.ndarray:
        for frame in self.decoded:
            position, self.next = self.next, self.next + 1
            if position == index:
                return frame.to_ndarray(format="rgb24")
        raise DataError(f"{self.path}: has only {self.next} decodable frames; frame index {index} was asked for")

    def close(self) -> None:
        self.container.close()
        self.file.close()


_CURSORS: OrderedDict[tuple[Location, tuple[int, int]], _Cursor] = OrderedDict()
_CURSORS_LOCK = threading.Lock()
_MAX_CURSORS = 2


def decode_frame(path: Location, index: int) -> np.ndarray:
    """Frame ``index`` (0-based, decode order) of a video file as RGB uint8 (H, W, 3)."""
    import av

    try:
        key = (path, file_version(path))
    except FileNotFoundError:
        raise DataError(f"{path}: video file missing") from None
    with _CURSORS_LOCK:
        cursor = _CURSORS.pop(key, None)
        if cursor is not None and cursor.next > index:  # behind the decoder: start again
            cursor.close()
            cursor = None
        try:
            if cursor is None:
                cursor = _Cursor(path)
            frame = cursor.read(index)
        except (av.FFmpegError, OSError, DataError) as error:  # OSError: a read of the file (or object) failed
            if cursor is not None:
                cursor.close()
            if isinstance(error, DataError):
                raise
            raise DataError(f"{path}: cannot decode frame {index}: {error}") from error
        _CURSORS[key] = cursor
        while len(_CURSORS) > _MAX_CURSORS:
            _CURSORS.popitem(last=False)[1].close()
    return frame


def probe_video(path: Location) -> tuple[int, int, int]:
    """(frame count, height, width) of a video file, from its stream header (decoding only if it has no count)."""
    import av

    try:
        with open_random(path) as file, av.open(file) as container:
            if not container.streams.video:
                raise DataError(f"{path}: has no video stream")
            stream = container.streams.video[0]
            count = stream.frames or sum(1 for _ in container.decode(stream))
            return count, stream.codec_context.height, stream.codec_context.width
    except (av.FFmpegError, OSError) as error:
        raise DataError(f"{path}: unreadable video: {error}") from error


@dataclasses.dataclass(frozen=True)
class Mp4Frames:
    """The frames of one mp4, decoded with PyAV (sequential reads reuse one open decoder)."""

    path: Location
    count: int

    def file(self, index: int) -> Location:
        return self.path

    def read(self, index: int) -> np.ndarray:
        if not 0 <= index < self.count:
            raise IndexError(f"frame index {index} out of range for {self.path} ({self.count} frames)")
        return decode_frame(self.path, index)

    def available(self) -> int:
        return self.count


# ---------------------------------------------------------------------------------------------- masks (h5)
def read_instance_h5(path: Location) -> np.ndarray:
    """One A2D annotation .h5 as an (H, W) int32 id map, value = instance id + 1 (0 = background); an object is read
    whole into memory."""
    import h5py

    try:
        with h5py.File(readable(path), "r") as file:
            missing = [name for name in ("instance", "reMask") if name not in file]
            if missing:
                raise DataError(f"{path}: missing dataset(s) {', '.join(missing)} (expected 'instance' and 'reMask')")
            instances = np.asarray(file["instance"]).reshape(-1)
            masks = np.asarray(file["reMask"])
    except OSError as error:
        raise DataError(f"{path}: unreadable HDF5 file: {error}") from error
    if masks.ndim == 2:  # MATLAB drops the leading axis of a single instance
        masks = masks[np.newaxis]
    if masks.ndim != 3 or masks.shape[0] != instances.size or instances.size == 0:
        raise DataError(f"{path}: reMask of shape {masks.shape} does not match {instances.size} instance ids")
    if not np.all(np.equal(np.mod(instances, 1), 0)) or np.any(instances < 0):
        raise DataError(f"{path}: instance ids {instances.tolist()} are not non-negative integers")
    masks = masks.transpose(0, 2, 1)  # (N, W, H) -> (N, H, W)
    ids = np.zeros(masks.shape[1:], dtype=np.int32)
    for instance, mask in zip(instances.astype(np.int64), masks):
        ids[mask != 0] = int(instance) + 1
    return ids


@dataclasses.dataclass(frozen=True)
class H5InstanceMasks:
    """Id maps of the annotated frames ``<folder>/<frame number:05d>.h5``; None for the other frames."""

    folder: Location
    annotated: frozenset[int]  # 1-based A2D frame numbers that have an .h5 file

    def file(self, index: int) -> Location:
        return self.folder / f"{index + 1:05d}.h5"

    def read(self, index: int) -> np.ndarray | None:
        if index + 1 not in self.annotated:
            return None
        return read_instance_h5(self.file(index))


def _annotated_frames(folder: Location) -> frozenset[int]:
    """The 1-based frame numbers of the .h5 files in ``folder`` (none when it is missing)."""
    try:
        files = [path for path, is_folder in list_folder(folder) if not is_folder]
    except (FileNotFoundError, NotADirectoryError):
        return frozenset()
    numbers = set()
    for path in files:
        if path.suffix == ".h5":
            if not path.stem.isdigit() or int(path.stem) < 1:
                raise DataError(f"{path}: expected a 1-based frame number as the file name")
            numbers.add(int(path.stem))
    return frozenset(numbers)


# ---------------------------------------------------------------------------------------------- reader
def read_a2d_sentences(root: str | Path, split: str | None = None, with_boxes: bool = True) -> Iterator[Video]:
    """A2D-Sentences videos. ``root``: the dataset folder, or a2d_annotation.txt itself; local or in object storage."""
    root = location(root)
    if root.is_file():
        annotation = root
        data_root = root.parent.parent if root.parent.name == ANNOTATION.parent.name else None
    elif root.is_dir():
        annotation, data_root = root / ANNOTATION, root
    else:
        raise DataError(f"{root}: no such dataset folder or annotation file")
    sentences = load_sentences(annotation)
    videoset = data_root / VIDEOSET if data_root is not None else None
    info: dict[str, VideoInfo] = {}
    if videoset is not None and videoset.is_file():
        info = load_videoset(videoset)
        split = split or "test"
        if split not in SPLITS:
            raise DataError(f"{videoset}: unknown split {split!r} (A2D-Sentences has 'train' and 'test')")
        unknown = [video for video in sentences if video not in info]
        if unknown:
            raise DataError(f"{videoset}: has no row for {len(unknown)} annotated videos, e.g. {unknown[0]!r}")
        sentences = {video: exps for video, exps in sentences.items() if info[video].split == SPLITS[split]}
    elif split not in (None, "all"):
        raise DataError(f"{videoset or annotation}: selecting split {split!r} needs Release/videoset.csv")
    else:
        split = "all"
    return _videos(sentences, annotation, info, data_root, split, with_boxes)


def _videos(sentences: dict, annotation: Location, info: dict, data_root: Location | None, split: str, with_boxes: bool) -> Iterator[Video]:
    for video_id, expressions in sentences.items():
        frames = masks = None
        count = height = width = 0
        annotated: frozenset[int] = frozenset()
        if data_root is not None:
            clip = data_root / CLIPS / f"{video_id}.mp4"
            if clip.is_file():
                count, height, width = probe_video(clip)
                frames = Mp4Frames(clip, count)
            mask_dir = data_root / INSTANCE_MASKS / video_id
            annotated = _annotated_frames(mask_dir)
            if annotated:
                masks = H5InstanceMasks(mask_dir, annotated)
        if frames is None:
            count = info[video_id].frames if video_id in info else max(annotated, default=0)
        video = Video(
            dataset="a2d-sentences",
            split=split,
            video_id=video_id,
            frame_names=tuple(f"{number:05d}" for number in range(1, count + 1)),
            height=height,
            width=width,
            expressions=tuple(expressions),
            frames=frames,
            masks=masks,
            annotation_file=annotation,
        )
        yield attach_boxes(video) if with_boxes else video
