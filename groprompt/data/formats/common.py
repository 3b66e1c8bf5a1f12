"""Shared by the readers: frame and mask sources over folders holding one image file per frame, and boxes.

Sources hold paths and names only (no open files), so records stay picklable. The folders and files may be local or
in object storage (``groprompt.files.location``).
"""

from __future__ import annotations

import dataclasses
import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from groprompt.data.records import Video, boxes_from_masks, check_objects_annotated
from groprompt.errors import DataError
from groprompt.files import Location, list_folder, readable
from groprompt.mask_io import read_index_png


def _checked(names: tuple[str, ...], index: int) -> str:
    if not 0 <= index < len(names):
        raise IndexError(f"frame index {index} out of range for a video of {len(names)} frames")
    return names[index]


def _listing(folder: Location) -> set[str]:
    try:
        return {path.name for path, _ in list_folder(folder)}
    except (FileNotFoundError, NotADirectoryError):
        return set()


def load_json(path: Location, expected: str) -> Any:
    """The parsed JSON file; a ``DataError`` naming it when it is missing (``expected`` says what it should hold),
    unreadable or not JSON."""
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: missing (expected {expected})") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: unreadable: {error}") from error
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: invalid JSON: {error}") from error


def image_bytes(path: Location) -> bytes:
    """The bytes of an image file; a ``DataError`` naming it when it is missing or unreadable."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: image missing") from None
    except OSError as error:
        raise DataError(f"{path}: unreadable image: {error}") from error


def decoded_image(payload: bytes, source: Location) -> Image.Image:
    """Image bytes decoded in full, so that a truncated file fails here; a ``DataError`` naming ``source`` otherwise."""
    try:
        image = Image.open(io.BytesIO(payload))
        image.load()
    except UnidentifiedImageError:
        raise DataError(f"{source}: unreadable image: {'empty file' if not payload else 'not an image format Pillow reads'}") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise DataError(f"{source}: unreadable image: {error}") from error
    return image


@dataclass(frozen=True)
class ImageFolderFrames:
    """Frames ``<folder>/<name><suffix>``, decoded to RGB uint8 (H, W, 3)."""

    folder: Location
    names: tuple[str, ...]
    suffix: str = ".jpg"

    def file(self, index: int) -> Location:
        return self.folder / f"{_checked(self.names, index)}{self.suffix}"

    def read(self, index: int) -> np.ndarray:
        path = self.file(index)
        with decoded_image(image_bytes(path), path) as image:
            return np.array(image.convert("RGB"), dtype=np.uint8)

    def available(self) -> int:
        present = _listing(self.folder)
        return sum(1 for name in self.names if f"{name}{self.suffix}" in present)

    def size(self) -> tuple[int, int]:
        """(height, width) from the header of the first frame on disk whose header reads; (0, 0) when none does.

        A frame that does not read is left to whoever decodes it (the shard stage refuses its video, naming the
        file), so that one bad frame, the first one included, never stops the reading of a whole dataset.
        """
        present = _listing(self.folder)
        for name in self.names:
            if f"{name}{self.suffix}" in present:
                path = self.folder / f"{name}{self.suffix}"
                try:
                    with Image.open(readable(path)) as image:
                        width, height = image.size
                except (OSError, SyntaxError, DataError):
                    continue
                return height, width
        return 0, 0


@dataclass(frozen=True)
class IndexPngMasks:
    """Palette (or greyscale) PNG id maps ``<folder>/<name>.png``, one for every listed frame: a video with an
    annotation folder is annotated in every frame, and a missing PNG is a ``DataError`` naming it."""

    folder: Location
    names: tuple[str, ...]

    def file(self, index: int) -> Location:
        return self.folder / f"{_checked(self.names, index)}.png"

    def read(self, index: int) -> np.ndarray:
        path = self.file(index)
        if not path.is_file():
            raise DataError(f"{path}: annotation missing (its video has an annotation folder, and the frame is listed)")
        return read_index_png(path)


def attach_boxes(video: Video) -> Video:
    """``video`` with per-object, per-frame tight boxes read from its masks.

    Every frame of every object is None (unannotated) when the video has no masks on disk; a mask of another
    size than the frames, or an expression whose object is in no annotated frame, is a ``DataError``.
    """
    if not video.object_ids:
        return video
    if video.masks is None:
        return dataclasses.replace(video, boxes={obj: (None,) * len(video.frame_names) for obj in video.object_ids})
    boxes = boxes_from_masks(video)
    check_objects_annotated(video, boxes)
    return dataclasses.replace(video, boxes=boxes)
