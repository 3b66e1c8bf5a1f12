"""What inference and evaluation share about online proposals (each runs ``Generator.stream`` over a video, so that
the same video and sentences give the same boxes in both): each frame's prompt boxes in frame pixels."""

from __future__ import annotations

import numpy as np
import torch

from groprompt.boxes import cxcywh_to_xyxy
from groprompt.models.generator import FrameOutput


def frame_boxes(boxes: torch.Tensor, height: int, width: int) -> np.ndarray:
    """(..., 4) normalised cxcywh to xyxy frame pixels, clipped to the frame (NaN stays NaN)."""
    xyxy = cxcywh_to_xyxy(boxes.float()).clamp(0, 1)
    scale = torch.tensor([width, height, width, height], dtype=torch.float32)
    return (xyxy.cpu() * scale).numpy()


def frame_prompts(output: FrameOutput, set_threshold: float | None, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A frame's prompt boxes (B, K, 4) xyxy in frame pixels and their confidences (B, K): the top box (K = 1), or in
    the set mode (``set_threshold``, ``model.set_score_threshold``) every query's box, NaN where its confidence is
    under the threshold (``FrameOutput.kept_boxes``)."""
    if set_threshold is None:
        boxes, scores = output.top_boxes()[:, None], output.top_scores()[:, None]
    else:
        boxes, scores = output.kept_boxes(set_threshold)
    return frame_boxes(boxes, height, width), scores.float().cpu().numpy()
