"""Frames as a pixel-reading proposal generator (Grounding DINO) takes them: small squares of RGB bytes."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from groprompt.data.shards import ShardSample


def resized_pixels(frame: np.ndarray, size: int) -> np.ndarray:
    """(3, size, size) uint8: an RGB frame (H, W, 3) resized bilinearly (as the detector's processor resizes) to a
    square; boxes are normalised to the frame, so the square keeps them. Normalisation is the detector's."""
    image = Image.fromarray(np.ascontiguousarray(frame[..., :3])).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image).transpose(2, 0, 1).copy()


def frame_pixels(frame: np.ndarray, size: int | None) -> torch.Tensor | None:
    """The frame's pixels for a generator that reads them (``size``: its ``pixel_size``), else None."""
    return None if size is None else torch.from_numpy(resized_pixels(frame, size))


def sample_pixels(sample: ShardSample, pixel_size: int | None) -> np.ndarray | None:
    """(T, 3, S, S) uint8: the sample's frames resized for a generator that reads pixels; None without ``pixel_size``."""
    if pixel_size is None:
        return None
    return np.stack([resized_pixels(sample.frame(t), pixel_size) for t in range(len(sample.meta["frame_names"]))])
