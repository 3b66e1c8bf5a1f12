"""HQ-SAM as a segmentor: loaded through the configuration from a tiny saved folder, its masks equal SamHQModel's own
two-step API (image embeddings, then the HQ decoder) resized by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from groprompt.config import ModelConfig
from groprompt.models.sam_hq import SamHQSegmentor
from groprompt.models.segmentors import build_segmentor

pytestmark = pytest.mark.usefixtures("one_torch_thread")
BOXES = np.array([[5.0, 4.0, 40.0, 30.0], [30.5, 10.0, 79.0, 47.0], [0.0, 0.0, 80.0, 48.0]])


def reference_masks(folder: Path, frame: np.ndarray, boxes: np.ndarray, hq_token_only: bool) -> np.ndarray:
    """SamHQModel called directly: image and intermediate embeddings, the decoder on them, logits resized to the frame."""
    from transformers import SamHQModel, SamHQProcessor

    model, processor = SamHQModel.from_pretrained(folder).eval(), SamHQProcessor.from_pretrained(folder)
    inputs = processor(images=frame, input_boxes=[boxes.tolist()], return_tensors="pt")
    with torch.no_grad():
        embeddings, intermediate = model.get_image_embeddings(inputs["pixel_values"])
        output = model(
            image_embeddings=embeddings,
            intermediate_embeddings=intermediate,
            input_boxes=inputs["input_boxes"].float(),
            multimask_output=False,
            hq_token_only=hq_token_only,
        )
    side = model.config.vision_config.image_size
    height, width = (int(v) for v in inputs["reshaped_input_sizes"][0])
    logits = F.interpolate(output.pred_masks[0], (side, side), mode="bilinear", align_corners=False)[..., :height, :width]
    logits = F.interpolate(logits, frame.shape[:2], mode="bilinear", align_corners=False)
    return (logits[:, 0] > 0).numpy()


def test_sam_hq_masks_equal_sam_hq_model_called_directly(sam_hq_folder: Path) -> None:
    frame = np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)
    segmentor = build_segmentor("sam-hq", config=ModelConfig(segmentor_weights=str(sam_hq_folder)))
    assert isinstance(segmentor, SamHQSegmentor) and segmentor.needs_frame and not segmentor.needs_embedding
    masks = segmentor.segment(frame, BOXES)
    assert masks.shape == (3, 48, 80) and masks.dtype == bool
    np.testing.assert_array_equal(masks, reference_masks(sam_hq_folder, frame, BOXES, hq_token_only=True))
    assert 0 < masks.mean() < 1
    assert (masks != reference_masks(sam_hq_folder, frame, BOXES, hq_token_only=False)).any()  # the HQ output alone, as the authors
    assert segmentor.segment(frame, np.zeros((0, 4))).shape == (0, 48, 80)
    with pytest.raises(ValueError, match="frame"):
        segmentor.segment(None, BOXES, size=(48, 80))
