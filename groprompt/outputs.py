"""Standard output formats: DAVIS palette PNGs (read and write)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from groprompt.data.records import DataError


def davis_palette() -> list[int]:
    """The DAVIS/PASCAL VOC colour palette (256 RGB triples, flattened)."""
    palette = []
    for index in range(256):
        r = g = b = 0
        c = index
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette += [r, g, b]
    return palette


def read_index_png(path: str | Path) -> np.ndarray:
    """Read a palette (or greyscale) PNG as an (H, W) int32 map of object ids."""
    try:
        with Image.open(path) as image:
            if image.mode not in ("P", "L", "1", "I", "I;16"):
                raise DataError(f"{path}: expected a palette or greyscale PNG, got mode {image.mode}")
            return np.asarray(image, dtype=np.int32)
    except (OSError, SyntaxError) as error:
        raise DataError(f"{path}: unreadable image: {error}") from error


def write_index_png(path: str | Path, ids: np.ndarray) -> None:
    """Write an (H, W) map of object ids (0-255) as a DAVIS palette PNG, atomically."""
    path = Path(path)
    if ids.ndim != 2 or ids.min(initial=0) < 0 or ids.max(initial=0) > 255:
        raise ValueError(f"{path}: expected an (H, W) id map with values in 0..255")
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(ids.astype(np.uint8), mode="P")
    image.putpalette(davis_palette())
    temporary = path.with_name(f".{path.name}.tmp")
    image.save(temporary, format="PNG")
    os.replace(temporary, path)
