"""Shared by the readers: frame and mask sources over folders holding one image file per frame, and boxes.

Sources hold paths and names only (no open files), so records stay picklable.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from groprompt.data.records import Video, boxes_from_masks
from groprompt.errors import DataError
from groprompt.outputs import read_index_png


def _checked(names: tuple[str, ...], index: int) -> str:
    if not 0 <= index < len(names):
        raise IndexError(f"frame index {index} out of range for a video of {len(names)} frames")
    return names[index]


def _listing(folder: Path) -> set[str]:
    try:
        return set(os.listdir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return set()


@dataclass(frozen=True)
class ImageFolderFrames:
    """Frames ``<folder>/<name><suffix>``, decoded to RGB uint8 (H, W, 3)."""

    folder: Path
    names: tuple[str, ...]
    suffix: str = ".jpg"

    def path(self, index: int) -> Path:
        return self.folder / f"{_checked(self.names, index)}{self.suffix}"

    def read(self, index: int) -> np.ndarray:
        path = self.path(index)
        try:
            with Image.open(path) as image:
                return np.array(image.convert("RGB"), dtype=np.uint8)
        except FileNotFoundError as error:
            raise DataError(f"{path}: frame {index} is missing") from error
        except (OSError, SyntaxError) as error:
            raise DataError(f"{path}: unreadable image: {error}") from error

    def available(self) -> int:
        present = _listing(self.folder)
        return sum(1 for name in self.names if f"{name}{self.suffix}" in present)

    def size(self) -> tuple[int, int]:
        """(height, width) of the first frame on disk, from its header only; (0, 0) when none is there."""
        present = _listing(self.folder)
        for name in self.names:
            if f"{name}{self.suffix}" in present:
                path = self.folder / f"{name}{self.suffix}"
                try:
                    with Image.open(path) as image:
                        width, height = image.size
                except (OSError, SyntaxError) as error:
                    raise DataError(f"{path}: unreadable image: {error}") from error
                return height, width
        return 0, 0


@dataclass(frozen=True)
class IndexPngMasks:
    """Palette (or greyscale) PNG id maps ``<folder>/<name>.png``; a frame without a PNG is unannotated (None)."""

    folder: Path
    names: tuple[str, ...]

    def read(self, index: int) -> np.ndarray | None:
        path = self.folder / f"{_checked(self.names, index)}.png"
        if not path.is_file():
            return None
        return read_index_png(path)


def attach_boxes(video: Video) -> Video:
    """``video`` with per-object, per-frame tight boxes read from its masks.

    Every frame of every object is None (unannotated) when the video has no masks on disk.
    """
    if not video.object_ids:
        return video
    n_frames = len(video.frame_names)
    if video.masks is None:
        boxes = {obj: (None,) * n_frames for obj in video.object_ids}
    else:
        boxes = boxes_from_masks(video.masks, n_frames, video.object_ids)
    return dataclasses.replace(video, boxes=boxes)
