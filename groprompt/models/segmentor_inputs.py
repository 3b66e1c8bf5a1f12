"""What every box -> mask backend checks of its inputs (boxes, frames, mask size), and which backends load a folder."""

from __future__ import annotations

import numpy as np

FOLDER_MODEL_TYPES = {"sam-hq": "sam_hq", "sam2": "sam2_video"}
"""Segmentors whose weights come from the ``model.segmentor_weights`` folder, and the model type it must hold."""


def check_boxes(boxes: np.ndarray) -> np.ndarray:
    """``boxes`` as float64 (N, 4); ValueError unless they are finite and of that shape."""
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or not np.isfinite(boxes).all():
        raise ValueError(f"expected finite xyxy boxes of shape (N, 4), got shape {boxes.shape}")
    return boxes


def rgb_frame(frame: np.ndarray | None, segmentor: str) -> np.ndarray:
    """``frame`` when it is an HxWx3 uint8 image; a ``ValueError`` naming the ``segmentor`` that needs one otherwise."""
    if frame is None or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"the {segmentor} segmentor needs the HxWx3 uint8 frame")
    return frame


def frame_size(frame: np.ndarray | None, size: tuple[int, int] | None) -> tuple[int, int]:
    """The masks' (H, W): ``size`` (which must agree with the frame's when both are given), else the frame's."""
    if size is not None:
        if frame is not None and tuple(frame.shape[:2]) != tuple(size):
            raise ValueError(f"size {size} differs from the frame's {frame.shape[:2]}")
        return int(size[0]), int(size[1])
    if frame is None:
        raise ValueError("give a frame or its size (H, W)")
    return int(frame.shape[0]), int(frame.shape[1])
