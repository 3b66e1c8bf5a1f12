"""SAM 2 as a segmentor with a memory of the video: each query is an object that SAM 2 tracks, online.

``transformers``' ``Sam2VideoModel`` and ``Sam2VideoProcessor`` from the local folder ``model.segmentor_weights`` (for
example ``facebook/sam2.1-hiera-base-plus`` saved with ``save_pretrained``), streamed one frame at a time: frame t
sees frames <= t only.

Memory policy, per object (query), each frame:
- its first box prompts SAM 2 on its own: that frame becomes the object's conditioning frame, kept for the video;
- later, the box prompts SAM 2 over its memory (the box and the memory-conditioned features decode the mask
  together) when the generator's confidence reaches ``model.sam2_prompt_score``; below it, or where there is no box,
  the box is ignored and the memory alone carries the object (the memory's mask is kept over a poor box);
- where SAM 2's object score says the object is absent (logit <= 0) the mask comes out empty, and the memory
  records the absence.

Bounded memory: the session of ``transformers`` keeps every frame's pixels and outputs. After each frame the stream
keeps only what memory attention reads later: the conditioning frame of each object, the memory features of its last
``num_maskmem - 1`` frames and the object pointers of its last ``max_object_pointers_in_encoder - 1`` frames (with the
vision features of the current frame, which the session's cache bounds); memory stays flat with video length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from groprompt.config import ModelConfig
from groprompt.models.pretrained import load_frozen
from groprompt.models.segmentor_inputs import FOLDER_MODEL_TYPES, frame_size, rgb_frame

MEMORY_KEYS = ("maskmem_features", "maskmem_pos_enc")  # what memory attention reads of a recent frame
POINTER_KEY = "object_pointer"  # what it reads of the frames within the object-pointer window

_HIERA_B_PLUS = {
    "model_type": "sam2_hiera_det_model",
    "hidden_size": 112,
    "num_attention_heads": 2,
    "blocks_per_stage": [2, 3, 16, 3],
    "embed_dim_per_stage": [112, 224, 448, 896],
    "num_attention_heads_per_stage": [2, 4, 8, 16],
    "window_size_per_stage": [8, 4, 14, 7],
    "global_attention_blocks": [12, 16, 20],
    "window_positional_embedding_background_size": [14, 14],
}
_TINY_SIDE, _TINY_DIM = 64, 128
_TINY_HIERA = {
    "model_type": "sam2_hiera_det_model",
    "hidden_size": 8,
    "num_attention_heads": 1,
    "image_size": [_TINY_SIDE, _TINY_SIDE],
    "blocks_per_stage": [1, 1, 2, 1],
    "embed_dim_per_stage": [8, 16, 32, 64],
    "num_attention_heads_per_stage": [1, 1, 1, 1],
    "window_size_per_stage": [2, 2, 2, 2],
    "global_attention_blocks": [3],
    "window_positional_embedding_background_size": [2, 2],
}
SAM2_CONFIGS: dict[str, dict[str, Any]] = {
    "hiera_b+": {
        "vision_config": {
            "model_type": "sam2_vision_model",
            "backbone_config": _HIERA_B_PLUS,
            "backbone_channel_list": [896, 448, 224, 112],
        }
    },
    "tiny": {
        "vision_config": {
            "model_type": "sam2_vision_model",
            "backbone_config": _TINY_HIERA,
            "backbone_channel_list": [64, 32, 16, 8],
            "backbone_feature_sizes": [[_TINY_SIDE // s, _TINY_SIDE // s] for s in (4, 8, 16)],
            "fpn_hidden_size": _TINY_DIM,
        },
        "prompt_encoder_config": {"hidden_size": _TINY_DIM, "image_size": _TINY_SIDE},
        "mask_decoder_config": {"hidden_size": _TINY_DIM, "mlp_dim": 64, "num_attention_heads": 2, "iou_head_hidden_dim": 32},
        "image_size": _TINY_SIDE,
        "num_maskmem": 3,
        "max_object_pointers_in_encoder": 4,
        "memory_attention_hidden_size": _TINY_DIM,
        "memory_attention_num_layers": 1,
        "memory_attention_feed_forward_hidden_size": 64,
        "memory_attention_rope_feat_sizes": [_TINY_SIDE // 16, _TINY_SIDE // 16],
        "memory_encoder_hidden_size": _TINY_DIM,
        "mask_downsampler_embed_dim": _TINY_DIM,
        "memory_fuser_embed_dim": _TINY_DIM,
        "memory_fuser_intermediate_dim": 64,
    },
}
"""``Sam2VideoConfig`` arguments by name: Hiera-B+ as SAM 2.1 lays it out, and a tiny test configuration (a memory of
2 past frames and 3 object pointers)."""


def random_sam2(name: str, seed: int = 0) -> tuple[Any, Any]:
    """(``Sam2VideoModel`` with random weights from ``seed``, its ``Sam2VideoProcessor``) of a ``SAM2_CONFIGS`` layout."""
    from transformers import Sam2ImageProcessor, Sam2VideoConfig, Sam2VideoModel, Sam2VideoProcessor, Sam2VideoVideoProcessor

    side = SAM2_CONFIGS[name].get("image_size", 1024)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Sam2VideoModel(Sam2VideoConfig(**SAM2_CONFIGS[name])).eval()
    size = {"height": side, "width": side}
    processor = Sam2VideoProcessor(image_processor=Sam2ImageProcessor(size=size), video_processor=Sam2VideoVideoProcessor(size=size))
    return model, processor


def forget_unread(session: Any, frame_idx: int, config: Any) -> None:
    """Drop from a ``Sam2VideoInferenceSession`` what SAM 2 reads no more once ``frame_idx`` is done (streaming forward).

    Kept: each object's conditioning frames (memory features and pointer), the memory features of the frames within
    ``num_maskmem - 1`` of the next frame, the object pointers within ``max_object_pointers_in_encoder - 1``. Dropped:
    frame pixels, masks, object scores, the prompts and the record of tracked frames (read on their own frame only).
    """
    session.processed_frames.clear()
    for obj_idx, outputs in session.output_dict_per_obj.items():
        for stored in outputs["cond_frame_outputs"].values():
            for key in [k for k in stored if k not in (*MEMORY_KEYS, POINTER_KEY)]:
                del stored[key]
        recent = outputs["non_cond_frame_outputs"]
        for frame in list(recent):
            age = frame_idx + 1 - frame  # its offset from the next frame
            kept = MEMORY_KEYS if age < config.num_maskmem else ()
            kept += (POINTER_KEY,) if age < config.max_object_pointers_in_encoder else ()
            recent[frame] = {key: recent[frame][key] for key in kept if key in recent[frame]}
            if not recent[frame]:
                del recent[frame]
        session.frames_tracked_per_obj[obj_idx].clear()
        session.point_inputs_per_obj[obj_idx].clear()
        session.mask_inputs_per_obj[obj_idx].clear()


class Sam2Stream:
    """One video through SAM 2, frame by frame: object i is query i (the memory policy is the module's)."""

    def __init__(self, model: Any, processor: Any, objects: int, prompt_score: float) -> None:
        self.model, self.processor, self.objects, self.prompt_score = model, processor, objects, prompt_score
        self.session = processor.init_video_session(inference_device=model.device, dtype=model.dtype)
        self.started: set[int] = set()  # objects with a conditioning frame
        self.frame_idx = 0

    @property
    def stateful(self) -> bool:
        return True

    def step(
        self,
        frame: np.ndarray | None,
        boxes: np.ndarray,
        scores: np.ndarray,
        embedding: torch.Tensor | None = None,
        size: tuple[int, int] | None = None,
    ) -> np.ndarray:
        frame = rgb_frame(frame, "sam2")
        size = frame_size(frame, size)
        boxes, scores = np.asarray(boxes, dtype=np.float64), np.asarray(scores, dtype=np.float64)
        if boxes.shape != (self.objects, 4) or scores.shape != (self.objects,):
            raise ValueError(f"expected boxes ({self.objects}, 4) and scores ({self.objects},), got {boxes.shape} and {scores.shape}")
        t, self.frame_idx = self.frame_idx, self.frame_idx + 1
        masks = np.zeros((self.objects, *size), dtype=bool)
        boxed = np.isfinite(boxes).all(axis=1)
        prompted = [i for i in range(self.objects) if boxed[i] and (i not in self.started or scores[i] >= self.prompt_score)]
        if not self.started and not prompted:
            return masks
        for i in self.started:  # a box on a tracked frame is decoded over the memory (else SAM 2 would restart the object)
            self.session.frames_tracked_per_obj[self.session.obj_id_to_idx(i)][t] = {"reverse": False}
        if prompted:
            self.processor.add_inputs_to_inference_session(
                self.session, frame_idx=t, obj_ids=prompted, input_boxes=[boxes[prompted].tolist()], original_size=size
            )
            self.started.update(prompted)
        pixels = self.processor(images=frame, return_tensors="pt", device=self.model.device)["pixel_values"][0]
        output = self.model(inference_session=self.session, frame_idx=t, frame=pixels)
        decoded = self.processor.post_process_masks([output.pred_masks.float()], original_sizes=[size], binarize=True)[0]
        masks[list(output.object_ids)] = decoded[:, 0].cpu().numpy()
        forget_unread(self.session, t, self.model.config)
        return masks


@dataclass(frozen=True)
class Sam2Segmentor:
    """SAM 2 with a memory of each video (a ``VideoSegmentor``); ``prompt_score``: ``model.sam2_prompt_score``."""

    model: Any  # Sam2VideoModel
    processor: Any  # Sam2VideoProcessor
    prompt_score: float = 0.5

    @property
    def needs_frame(self) -> bool:
        return True

    @property
    def needs_embedding(self) -> bool:
        return False

    def open(self, objects: int) -> Sam2Stream:
        return Sam2Stream(self.model, self.processor, objects, self.prompt_score)


def load_sam2(config: ModelConfig) -> Sam2Segmentor:
    """The SAM 2 of ``config.segmentor_weights`` in ``config.segmentor_dtype`` (``groprompt.models.pretrained``)."""
    from transformers import Sam2VideoModel, Sam2VideoProcessor

    model, processor = load_frozen(
        config.segmentor_weights,
        "sam2",
        FOLDER_MODEL_TYPES["sam2"],
        Sam2VideoModel,
        Sam2VideoProcessor,
        config.segmentor_dtype,
        config.allow_random_weights,
    )
    return Sam2Segmentor(model, processor, config.sam2_prompt_score)
