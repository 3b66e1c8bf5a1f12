"""JHMDB-Sentences, as laid out after the standard (MTTR / ReferFormer) preparation.

    <root>/Rename_Images/<action>/<video>/<frame:05d>.png          1-based frame numbers
    <root>/puppet_mask/<action>/<video>/puppet_mask.mat             "part_mask": H x W x T (MATLAB)
    <root>/jhmdb_sentences_samples_metadata.json
        [[video_id, "Rename_Images/<action>/<video>/<frame>.png", "puppet_mask/<action>/<video>/puppet_mask.mat",
          n_frames, sentence], ...]                                 paths relative to the root

Conventions (those of MTTR's ``jhmdb_sentences_dataset.py``): one sentence and one object (id 1) per video;
frame "00001" is mask index 0 of ``part_mask.transpose(2, 0, 1)``; ``n_frames`` counts the frames that have a
puppet mask. The benchmark evaluates three sampled frames per video (the samples): ``PuppetMasks`` returns
the mask of those frames and None for the others (so boxes are None there too). JHMDB-Sentences is an
evaluation-only benchmark with no split; its videos are labelled split "test" (MTTR's name).
``root`` may also be the metadata JSON itself (annotation-only counting). ``root`` may be local or in object storage
(``groprompt.files.location``).
"""

from __future__ import annotations

import functools
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from groprompt.data.formats.common import ImageFolderFrames, attach_boxes, load_json
from groprompt.data.records import Expression, Video
from groprompt.errors import DataError
from groprompt.files import Location, file_version, location, readable

METADATA = "jhmdb_sentences_samples_metadata.json"
SPLIT = "test"


# ---------------------------------------------------------------------------------------------- masks
def _v5_part_mask(source: Path | io.BytesIO, path: Location) -> np.ndarray:
    """part_mask of a MATLAB v5 file as T x H x W (``NotImplementedError`` for a v7.3 file)."""
    import scipy.io

    masks = scipy.io.loadmat(source, variable_names=["part_mask"]).get("part_mask")
    if masks is None:
        raise DataError(f"{path}: has no part_mask variable")
    masks = np.asarray(masks)
    masks = masks[:, :, np.newaxis] if masks.ndim == 2 else masks
    return masks.transpose(2, 0, 1) if masks.ndim == 3 else masks  # H x W x T -> T x H x W


def _v73_part_mask(source: Path | io.BytesIO, path: Location) -> np.ndarray:
    """part_mask of a MATLAB v7.3 file (HDF5, stored transposed: T x W x H) as T x H x W."""
    import h5py

    with h5py.File(source, "r") as file:
        if "part_mask" not in file:
            raise DataError(f"{path}: has no part_mask variable")
        masks = np.asarray(file["part_mask"])
    masks = masks[np.newaxis] if masks.ndim == 2 else masks
    return masks.transpose(0, 2, 1) if masks.ndim == 3 else masks


@functools.lru_cache(maxsize=8)
def _load_part_mask(path: Location, _version: tuple[int, int]) -> np.ndarray:
    """The puppet masks of a v5 or v7.3 .mat file (local, or read whole into memory from object storage)."""
    from scipy.io.matlab import MatReadError

    try:
        source = readable(path)
        try:
            masks = _v5_part_mask(source, path)
        except NotImplementedError:
            if isinstance(source, io.BytesIO):
                source.seek(0)
            masks = _v73_part_mask(source, path)
    except DataError:
        raise
    except (OSError, ValueError, TypeError, MatReadError) as error:
        raise DataError(f"{path}: unreadable .mat file: {error}") from error
    if masks.ndim != 3:
        raise DataError(f"{path}: part_mask has shape {masks.shape}, expected H x W x T")
    masks = masks != 0
    masks.flags.writeable = False
    return masks


def load_part_mask(path: Location) -> np.ndarray:
    """The puppet masks of one video as a read-only (T, H, W) bool array (cached per process)."""
    try:
        version = file_version(path)
    except FileNotFoundError:
        raise DataError(f"{path}: puppet mask file missing") from None
    return _load_part_mask(path, version)


@dataclass(frozen=True)
class PuppetMasks:
    """Object 1's puppet mask per frame; None for frames outside ``annotated`` (None = every frame)."""

    path: Location
    annotated: frozenset[int] | None = None  # 0-based frame indices

    def file(self, index: int) -> Location:
        return self.path

    def read(self, index: int) -> np.ndarray | None:
        if self.annotated is not None and index not in self.annotated:
            return None
        masks = load_part_mask(self.path)
        if not 0 <= index < masks.shape[0]:
            if self.annotated is not None:
                raise DataError(f"{self.path}: has {masks.shape[0]} masks, but frame index {index} is annotated")
            return None
        return masks[index].astype(np.int32)


# ---------------------------------------------------------------------------------------------- metadata
@dataclass
class _VideoEntry:
    frame_dir: PurePosixPath
    mask_path: PurePosixPath
    n_frames: int
    sentences: list[str]
    sampled: set[int]  # 0-based


def load_samples(path: Location) -> dict[str, _VideoEntry]:
    """Parse the samples metadata: video id -> its frame folder, mask file, frame count, sentences, samples."""
    samples = load_json(path, "the JHMDB-Sentences samples metadata")
    if not isinstance(samples, list):
        raise DataError(f"{path}: expected a list of samples")
    videos: dict[str, _VideoEntry] = {}
    for number, sample in enumerate(samples):
        where = f"{path}: sample {number}"
        if not (isinstance(sample, list) and len(sample) == 5):
            raise DataError(f"{where}: expected [video_id, frame path, mask path, n_frames, sentence]")
        video_id, frame_path, mask_path, n_frames, sentence = sample
        if not all(isinstance(value, str) and value.strip() for value in (video_id, frame_path, mask_path, sentence)):
            raise DataError(f"{where}: video id, paths and sentence must be non-empty strings")
        if not isinstance(n_frames, int) or isinstance(n_frames, bool) or n_frames < 1:
            raise DataError(f"{where}: n_frames {n_frames!r} is not a positive integer")
        frame = PurePosixPath(frame_path)
        if not (frame.suffix == ".png" and frame.stem.isdigit() and 1 <= int(frame.stem) <= n_frames):
            raise DataError(f"{where}: frame {frame_path!r} is not a 1-based frame number <= n_frames .png")
        entry = videos.get(video_id)
        if entry is None:
            entry = videos[video_id] = _VideoEntry(frame.parent, PurePosixPath(mask_path), n_frames, [], set())
        elif (entry.frame_dir, entry.mask_path, entry.n_frames) != (frame.parent, PurePosixPath(mask_path), n_frames):
            raise DataError(f"{where}: disagrees with earlier samples of video {video_id} on its folder, mask or length")
        if sentence.strip() not in entry.sentences:
            entry.sentences.append(sentence.strip())
        entry.sampled.add(int(frame.stem) - 1)
    return videos


def count_samples(root: str | Path, split: str | None = None) -> dict[str, int]:
    """{"samples": number of (video, frame, sentence) evaluation samples}."""
    metadata, _ = _locate(location(root), split)
    videos = load_samples(metadata)
    return {"samples": sum(len(entry.sampled) * len(entry.sentences) for entry in videos.values())}


# ---------------------------------------------------------------------------------------------- reader
def _locate(root: Location, split: str | None) -> tuple[Location, Location]:
    """(metadata file, dataset root) of ``root``, the dataset folder or the metadata file."""
    if split not in (None, SPLIT):
        raise DataError(f"{root}: JHMDB-Sentences has no split {split!r} (it is one evaluation set, 'test')")
    if root.is_file():
        return root, root.parent
    if root.is_dir():
        return root / METADATA, root
    raise DataError(f"{root}: no such dataset folder or metadata file")


def read_jhmdb_sentences(root: str | Path, split: str | None = None, with_boxes: bool = True) -> Iterator[Video]:
    """JHMDB-Sentences videos. ``root``: the dataset folder, or the samples metadata JSON itself; local or in object
    storage."""
    metadata, data_root = _locate(location(root), split)
    return _videos(load_samples(metadata), metadata, data_root, with_boxes)


def _videos(videos: dict[str, _VideoEntry], metadata: Location, data_root: Location, with_boxes: bool) -> Iterator[Video]:
    for video_id, entry in videos.items():
        names = tuple(f"{number:05d}" for number in range(1, entry.n_frames + 1))
        frame_dir = data_root / entry.frame_dir.as_posix()
        mask_path = data_root / entry.mask_path.as_posix()
        frames = ImageFolderFrames(frame_dir, names, ".png") if frame_dir.is_dir() else None
        height, width = frames.size() if frames is not None else (0, 0)
        masks = PuppetMasks(mask_path, frozenset(entry.sampled)) if mask_path.is_file() else None
        video = Video(
            dataset="jhmdb-sentences",
            split=SPLIT,
            video_id=video_id,
            frame_names=names,
            height=height,
            width=width,
            expressions=tuple(Expression(exp_id=str(number), text=text, obj_id=1) for number, text in enumerate(entry.sentences)),
            frames=frames,
            masks=masks,
            annotation_file=metadata,
        )
        yield attach_boxes(video) if with_boxes else video
