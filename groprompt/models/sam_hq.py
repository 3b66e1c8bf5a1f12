"""HQ-SAM as a segmentor: the high-quality mask of each box (``hq_token_only``, as the GroPrompt authors prompt it).

``transformers``' ``SamHQModel`` and ``SamHQProcessor`` from the local folder ``model.segmentor_weights`` (for example
``syscv-community/sam-hq-vit-huge`` saved with ``save_pretrained``). HQ-SAM's decoder reads the image embedding and
the ViT's first global-attention block output, which the project's cached SAM embeddings do not hold: its ViT runs
on every frame (one more image-encoder pass per frame). ``SAM_HQ_CONFIGS`` lay out the released sizes and a tiny one
for tests and CPU dry runs (random weights).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from groprompt.config import ModelConfig
from groprompt.models.pretrained import load_frozen
from groprompt.models.segmentor_inputs import FOLDER_MODEL_TYPES, check_boxes, frame_size, rgb_frame

_TINY_SIDE, _TINY_PATCH, _TINY_DIM = 64, 8, 32
SAM_HQ_CONFIGS: dict[str, dict[str, Any]] = {
    "vit_b": {"vision_config": {}, "mask_decoder_config": {"vit_dim": 768}},
    "vit_l": {
        "vision_config": {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "global_attn_indexes": [5, 11, 17, 23]},
        "mask_decoder_config": {"vit_dim": 1024},
    },
    "vit_h": {
        "vision_config": {"hidden_size": 1280, "num_hidden_layers": 32, "num_attention_heads": 16, "global_attn_indexes": [7, 15, 23, 31]},
        "mask_decoder_config": {"vit_dim": 1280},
    },
    "tiny": {
        "vision_config": {
            "hidden_size": _TINY_DIM,
            "output_channels": _TINY_DIM,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": _TINY_SIDE,
            "patch_size": _TINY_PATCH,
            "window_size": 4,
            "global_attn_indexes": [1],
            "mlp_dim": 2 * _TINY_DIM,
            "num_pos_feats": _TINY_DIM // 2,
        },
        "prompt_encoder_config": {"hidden_size": _TINY_DIM, "image_size": _TINY_SIDE, "patch_size": _TINY_PATCH},
        "mask_decoder_config": {
            "hidden_size": _TINY_DIM,
            "mlp_dim": 2 * _TINY_DIM,
            "num_attention_heads": 2,
            "iou_head_hidden_dim": _TINY_DIM,
            "vit_dim": _TINY_DIM,
        },
    },
}
"""``SamHQConfig`` arguments by name: the released ViT-B/L/H layouts and a tiny test configuration."""


def random_sam_hq(name: str, seed: int = 0) -> tuple[Any, Any]:
    """(``SamHQModel`` with random weights from ``seed``, its ``SamHQProcessor``) of a ``SAM_HQ_CONFIGS`` layout."""
    from transformers import SamHQConfig, SamHQModel, SamHQProcessor, SamImageProcessor

    side = SAM_HQ_CONFIGS[name]["vision_config"].get("image_size", 1024)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SamHQModel(SamHQConfig(**SAM_HQ_CONFIGS[name])).eval()
    images = SamImageProcessor(size={"longest_edge": side}, pad_size={"height": side, "width": side})
    return model, SamHQProcessor(image_processor=images)


@dataclass(frozen=True)
class SamHQSegmentor:
    """Each box's HQ-SAM mask on the frame (``multimask_output=False``, ``hq_token_only=True``); the ViT runs on the
    frame, all of its boxes go through the decoder as one batch, on the model's device and in its dtype."""

    model: Any  # SamHQModel
    processor: Any  # SamHQProcessor

    @property
    def needs_frame(self) -> bool:
        return True

    @property
    def needs_embedding(self) -> bool:
        return False

    def segment(
        self,
        frame: np.ndarray | None,
        boxes: np.ndarray,
        embedding: torch.Tensor | None = None,
        size: tuple[int, int] | None = None,
    ) -> np.ndarray:
        frame = rgb_frame(frame, "sam-hq")
        size, boxes = frame_size(frame, size), check_boxes(boxes)
        if len(boxes) == 0:
            return np.zeros((0, *size), dtype=bool)
        device, dtype = self.model.device, self.model.dtype
        inputs = self.processor(images=frame, input_boxes=[boxes.tolist()], return_tensors="pt", device=device)
        with torch.inference_mode():
            output = self.model(
                pixel_values=inputs["pixel_values"].to(device, dtype),
                input_boxes=inputs["input_boxes"].to(device, dtype),
                multimask_output=False,
                hq_token_only=True,
            )
            masks = self.processor.post_process_masks(output.pred_masks.float(), inputs["original_sizes"], inputs["reshaped_input_sizes"])
        return masks[0][:, 0].cpu().numpy()


def load_sam_hq(config: ModelConfig) -> SamHQSegmentor:
    """The HQ-SAM of ``config.segmentor_weights`` in ``config.segmentor_dtype`` (``groprompt.models.pretrained``)."""
    from transformers import SamHQModel, SamHQProcessor

    model, processor = load_frozen(
        config.segmentor_weights,
        "sam-hq",
        FOLDER_MODEL_TYPES["sam-hq"],
        SamHQModel,
        SamHQProcessor,
        config.segmentor_dtype,
        config.allow_random_weights,
    )
    return SamHQSegmentor(model, processor)
