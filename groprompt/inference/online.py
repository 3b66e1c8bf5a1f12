"""What inference and evaluation share about online proposals (each runs ``Generator.stream`` over a video, so that
the same video and sentences give the same boxes in both): top boxes in frame pixels."""

from __future__ import annotations

import numpy as np
import torch

from groprompt.boxes import cxcywh_to_xyxy


def frame_boxes(top_boxes: torch.Tensor, height: int, width: int) -> np.ndarray:
    """(Q, 4) normalised cxcywh to xyxy frame pixels, clipped to the frame."""
    xyxy = cxcywh_to_xyxy(top_boxes.float()).clamp(0, 1)
    scale = torch.tensor([width, height, width, height], dtype=torch.float32)
    return (xyxy.cpu() * scale).numpy()
