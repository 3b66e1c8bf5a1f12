"""A frozen Segment Anything model: batched image encoding, differentiable box embedding, box-to-mask decoding.

Every configuration is built from the ``segment_anything`` classes. ``vit_h``, ``vit_l`` and ``vit_b`` match
the released checkpoints (load them from a path); ``tiny`` and ``tiny-d0`` are small random models for tests
and the offline demo. Preprocessing and postprocessing are SAM's own (``ResizeLongestSide``,
``Sam.preprocess``, ``Sam.postprocess_masks``), so results equal ``SamPredictor``'s.

``EncoderOptions`` (``encoder_options.py``) make the image encoder fast on accelerators without changing its
weights or state-dict keys; the defaults are plain float32 eager PyTorch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import torch
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer
from segment_anything.utils.transforms import ResizeLongestSide
from torch import nn

from groprompt.errors import CheckpointError, ConfigError
from groprompt.files import Location, location, sha256_file
from groprompt.models.encoder_options import EncoderOptions, encoder_autocast, use_sdpa
from groprompt.torch_files import read_file

if TYPE_CHECKING:
    pass

Frames = Sequence[np.ndarray] | torch.Tensor


@dataclass(frozen=True)
class SamConfig:
    """Architecture of one SAM: ViT image encoder, prompt encoder, two-way-transformer mask decoder."""

    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: tuple[int, ...]
    image_size: int = 1024
    patch_size: int = 16
    window_size: int = 14
    prompt_embed_dim: int = 256
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    iou_head_hidden_dim: int = 256
    mask_in_chans: int = 16

    @property
    def embed_grid(self) -> int:
        """Side of the square image-embedding grid."""
        return self.image_size // self.patch_size


_TINY = SamConfig(
    encoder_embed_dim=64,
    encoder_depth=2,
    encoder_num_heads=2,
    encoder_global_attn_indexes=(1,),
    image_size=256,
    window_size=4,
    prompt_embed_dim=64,
    decoder_mlp_dim=256,
    decoder_num_heads=2,
    iou_head_hidden_dim=64,
)

SAM_CONFIGS: dict[str, SamConfig] = {
    "vit_h": SamConfig(1280, 32, 16, (7, 15, 23, 31)),
    "vit_l": SamConfig(1024, 24, 16, (5, 11, 17, 23)),
    "vit_b": SamConfig(768, 12, 12, (2, 5, 8, 11)),
    "tiny": _TINY,
    "tiny-d0": replace(_TINY, encoder_depth=0, encoder_global_attn_indexes=()),
}
"""Named configurations; add an entry to register another."""


def build_sam(config: SamConfig) -> Sam:
    """Build a randomly initialised SAM exactly as ``segment_anything.build_sam`` lays it out."""
    grid = config.embed_grid
    return Sam(
        image_encoder=ImageEncoderViT(
            depth=config.encoder_depth,
            embed_dim=config.encoder_embed_dim,
            img_size=config.image_size,
            mlp_ratio=4,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
            num_heads=config.encoder_num_heads,
            patch_size=config.patch_size,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=config.encoder_global_attn_indexes,
            window_size=config.window_size,
            out_chans=config.prompt_embed_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=config.prompt_embed_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(config.image_size, config.image_size),
            mask_in_chans=config.mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=2,
                embedding_dim=config.prompt_embed_dim,
                mlp_dim=config.decoder_mlp_dim,
                num_heads=config.decoder_num_heads,
            ),
            transformer_dim=config.prompt_embed_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=config.iou_head_hidden_dim,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )


def load_sam_weights(sam: Sam, path: Location) -> None:
    """Load a ``Sam`` state dict from ``path`` (``weights_only``), strictly; errors name the file."""
    state = read_file(path)
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: expected a state dict, found {type(state).__name__}")
    expected = set(sam.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: keys do not fit this SAM: {len(missing)} missing {missing[:5]}, {len(unexpected)} unexpected {unexpected[:5]}"
        )
    try:
        sam.load_state_dict(state, strict=True)
    except RuntimeError as error:  # shape mismatches
        raise CheckpointError(f"{path}: tensors do not fit this SAM: {error}") from error


TEST_SAMS = frozenset({"tiny", "tiny-d0"})
"""Configurations meant for random weights (tests, the CPU demo); any other needs a checkpoint."""


def require_weights(name: str, checkpoint: str | os.PathLike[str] | None, allow_random: bool) -> None:
    """Refuse a full-size SAM without a checkpoint (its masks and embeddings would mean nothing) unless allowed."""
    if checkpoint is None and name not in TEST_SAMS and not allow_random:
        raise ConfigError(
            f"model.sam={name} has no model.sam_checkpoint: its weights would be random; give the official checkpoint "
            "file, or set model.allow_random_weights=true (speed measurements only)"
        )


class FrozenSam(nn.Module):
    """A SAM whose parameters never train, always in eval mode.

    ``weights_id`` names the weights for manifests: the checkpoint file's sha256 hex, or ``random-init:<seed>``.
    ``options`` are applied to ``sam``'s image encoder in place (see ``EncoderOptions``).
    """

    def __init__(self, sam: Sam, name: str, weights_id: str, options: EncoderOptions = EncoderOptions()) -> None:
        super().__init__()
        self.sam = sam
        self.name = name
        self.weights_id = weights_id
        self.options = options
        self.transform = ResizeLongestSide(sam.image_encoder.img_size)
        self.requires_grad_(False)
        self.train(False)
        if options.sdpa:
            use_sdpa(sam.image_encoder)
        if options.channels_last:
            sam.image_encoder.to(memory_format=torch.channels_last)
        if options.compile:
            sam.image_encoder.compile(dynamic=False)

    @classmethod
    def from_name(
        cls, name: str, checkpoint: str | os.PathLike[str] | None = None, seed: int = 0, options: EncoderOptions = EncoderOptions()
    ) -> FrozenSam:
        """Build the named configuration; load ``checkpoint`` if given, else random weights from ``seed``."""
        if name not in SAM_CONFIGS:
            raise ConfigError(f"model.sam: unknown SAM {name!r}; known: {sorted(SAM_CONFIGS)}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            sam = build_sam(SAM_CONFIGS[name])
        if checkpoint is None:
            return cls(sam, name, f"random-init:{seed}", options)
        path = location(checkpoint)  # a local file or an object in a bucket
        load_sam_weights(sam, path)
        return cls(sam, name, sha256_file(path), options)

    def train(self, mode: bool = True) -> FrozenSam:
        """Stay in eval mode whatever ``mode`` says."""
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return self.sam.device

    @property
    def image_size(self) -> int:
        """Side of the square, padded encoder input in pixels."""
        return self.sam.image_encoder.img_size

    @property
    def embed_dim(self) -> int:
        """Channels of the image embedding and of prompt embeddings."""
        return self.sam.prompt_encoder.embed_dim

    @property
    def embed_grid(self) -> int:
        """Side of the square image-embedding grid."""
        return self.sam.prompt_encoder.image_embedding_size[0]

    def input_size(self, original_size: tuple[int, int]) -> tuple[int, int]:
        """(h, w) of a frame of ``original_size`` (H, W) after resizing its longest side to ``image_size``."""
        return ResizeLongestSide.get_preprocess_shape(original_size[0], original_size[1], self.image_size)

    def prepare(self, frame: np.ndarray) -> torch.Tensor:
        """One HxWx3 uint8 RGB frame resized as ``SamPredictor`` does: an (h, w, 3) uint8 CPU tensor.

        It touches no model state, so a loader thread may run it (and pin the result) while the encoder works.
        """
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected an HxWx3 uint8 RGB frame, got shape {frame.shape} dtype {frame.dtype}")
        return torch.from_numpy(self.transform.apply_image(frame))

    def preprocess(self, frame: np.ndarray) -> torch.Tensor:
        """One HxWx3 uint8 RGB frame to the normalised, padded (3, S, S) encoder input, as ``SamPredictor``."""
        return self._normalise(self.prepare(frame))

    def _normalise(self, image: torch.Tensor) -> torch.Tensor:
        """A ``prepare``d image on the device (asynchronously from pinned memory), normalised and padded."""
        return self.sam.preprocess(image.to(self.device, non_blocking=True).permute(2, 0, 1))

    def encode(self, frames: Frames) -> torch.Tensor:
        """Image embeddings (B, C, g, g) float32 of RGB uint8 frames: a list (any sizes) or a (B, H, W, 3) tensor.

        The encoder runs once over the batch. The result is an ordinary tensor (not an inference tensor),
        so it may feed a graph that trains something else.
        """
        if isinstance(frames, torch.Tensor):
            frames = list(frames.cpu().numpy())
        return self.encode_prepared([self.prepare(frame) for frame in frames])

    def encode_prepared(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        """``encode`` of frames already ``prepare``d: (B, C, g, g) float32, an ordinary tensor."""
        if not images:
            return torch.empty((0, self.embed_dim, self.embed_grid, self.embed_grid), device=self.device)
        with torch.inference_mode():
            embeddings = self.encode_inputs(torch.stack([self._normalise(image) for image in images]))
        return embeddings.clone(memory_format=torch.contiguous_format)

    def encode_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        """The image encoder under ``options`` on normalised, padded inputs (B, 3, S, S): embeddings (B, C, g, g) float32."""
        if self.options.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        with encoder_autocast(inputs.device.type, self.options.dtype):
            return self.sam.image_encoder(inputs).float()

    def transform_boxes(self, boxes: torch.Tensor, original_size: tuple[int, int]) -> torch.Tensor:
        """xyxy boxes (N, 4) in original-frame pixels to encoder-input pixels; differentiable.

        Computed in float64 like ``ResizeLongestSide.apply_boxes`` (the path ``SamPredictor.predict`` takes).
        """
        height, width = self.input_size(original_size)
        sx, sy = width / original_size[1], height / original_size[0]
        scale = torch.tensor([sx, sy, sx, sy], dtype=torch.float64, device=boxes.device)
        dtype = boxes.dtype if boxes.is_floating_point() else torch.float32
        return (boxes.to(torch.float64) * scale).to(dtype)

    def dense_pe(self) -> torch.Tensor:
        """SAM's positional encoding of the embedding grid (C, g, g), shared by prompts and image."""
        return self.sam.prompt_encoder.get_dense_pe()[0]

    def embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        """Sparse prompt embeddings (N, 2, C) of xyxy boxes (N, 4) in encoder-input pixels; differentiable."""
        sparse, _ = self.sam.prompt_encoder(points=None, boxes=boxes.to(self.device, torch.float32), masks=None)
        return sparse

    @torch.inference_mode()
    def predict_logits(
        self, embedding: torch.Tensor, input_boxes: torch.Tensor, multimask: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Low-resolution mask logits (N, K, 4g, 4g) and IoU predictions (N, K) for boxes on one frame.

        ``embedding`` is (C, g, g) or (1, C, g, g); ``input_boxes`` are xyxy in encoder-input pixels;
        K is 3 with ``multimask``, else 1.
        """
        grid = self.embed_grid
        image = embedding.reshape(1, self.embed_dim, grid, grid).to(self.device, torch.float32)
        boxes = input_boxes.to(self.device, torch.float32)
        sparse, dense = self.sam.prompt_encoder(points=None, boxes=boxes, masks=None)
        return self.sam.mask_decoder(
            image_embeddings=image,
            image_pe=self.sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
        )

    @torch.inference_mode()
    def decode(
        self,
        embedding: torch.Tensor,
        boxes: torch.Tensor | np.ndarray,
        original_size: tuple[int, int],
        multimask: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Bool masks (N, H, W) at ``original_size`` and IoU predictions (N,) for xyxy boxes in frame pixels.

        With ``multimask`` SAM predicts three masks per box and the one with the highest IoU prediction is kept.
        """
        input_boxes = self.transform_boxes(torch.as_tensor(boxes, device=self.device), original_size)
        if len(input_boxes) == 0:  # SAM's mask decoder cannot reshape an empty batch
            empty = torch.zeros((0, *original_size), dtype=torch.bool, device=self.device)
            return empty, torch.zeros(0, device=self.device)
        logits, scores = self.predict_logits(embedding, input_boxes, multimask)
        best = scores.argmax(dim=1, keepdim=True)
        logits = logits.take_along_dim(best[:, :, None, None], dim=1)
        masks = self.sam.postprocess_masks(logits, self.input_size(original_size), original_size)
        return masks[:, 0] > self.sam.mask_threshold, scores.take_along_dim(best, dim=1)[:, 0]
