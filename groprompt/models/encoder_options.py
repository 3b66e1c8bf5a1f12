"""How the frozen encoders compute: bfloat16 autocast, attention through ``scaled_dot_product_attention``,
channels-last and ``torch.compile``, without changing the weights or the state-dict keys."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from segment_anything.modeling import ImageEncoderViT
from segment_anything.modeling.image_encoder import Attention, get_rel_pos
from torch import nn

from groprompt.errors import ConfigError

if TYPE_CHECKING:
    from groprompt.config import ModelConfig

ENCODER_DTYPES = ("float32", "bfloat16")
"""Compute dtypes of the frozen encoders: float32, or bfloat16 autocast (weights stay float32)."""


def encoder_autocast(device_type: str, dtype: str) -> torch.autocast:
    """Autocast to bfloat16 on ``device_type`` when ``dtype`` is ``"bfloat16"``; a disabled one for float32."""
    if dtype not in ENCODER_DTYPES:
        raise ConfigError(f"model.encoder_dtype: {dtype!r} is not one of {', '.join(ENCODER_DTYPES)}")
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=dtype == "bfloat16")


@dataclass(frozen=True)
class EncoderOptions:
    """How the frozen SAM image encoder computes; the defaults are today's float32 eager path, bit for bit.

    - ``dtype="bfloat16"``: the encoder runs under ``torch.autocast`` (weights stay float32; embeddings come
      back float32). Masks decoded from bfloat16 embeddings with the same boxes keep a mean IoU of 0.97-0.997
      with the float32 ones on tiny random SAMs (4 seeds, worst single mask 0.89; the test asserts >= 0.95 per
      model, 0.975 pooled). Meant for GPUs: on a CPU without bfloat16 instructions (this AMD EPYC) the tiny
      encoder ran 10x slower than in float32.
    - ``sdpa``: attention through ``scaled_dot_product_attention`` with the relative-position bias as its
      additive mask (``SdpaAttention``); equal to the original within float32 rounding (3e-6 of the largest
      value). It helps on CPU too (tiny SAM, float32: 25% faster).
    - ``channels_last``: channels-last weights and input for the convolutions (patch embedding, neck). On CPU
      it does not help float32 (tiny SAM: 6% slower) but it speeds bfloat16 up 1.6-2x (the NCHW bfloat16
      convolutions are slow there); measure it on GPUs with ``benchmarks/device_suite.py``.
    - ``compile``: ``torch.compile`` of the encoder (in place: state-dict keys keep their names). It compiles
      on the first batch and again for each new batch shape; ``benchmarks/device_suite.py`` reports the seconds.
    """

    dtype: str = "float32"
    sdpa: bool = False
    channels_last: bool = False
    compile: bool = False

    def __post_init__(self) -> None:
        encoder_autocast("cpu", self.dtype)  # validates the name

    @classmethod
    def from_config(cls, config: ModelConfig) -> EncoderOptions:
        """The ``model.encoder_*`` keys."""
        return cls(config.encoder_dtype, config.encoder_sdpa, config.encoder_channels_last, config.encoder_compile)

    def describe(self) -> str:
        """A short label such as ``bfloat16+sdpa+compile``."""
        flags = [name for name in ("sdpa", "channels_last", "compile") if getattr(self, name)]
        return "+".join([self.dtype, *flags])


def relative_position_bias(q: torch.Tensor, rel_pos_h: torch.Tensor, rel_pos_w: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The decomposed relative-position term that ``add_decomposed_rel_pos`` adds to the attention logits.

    ``q`` is (B, heads, H*W, d), unscaled as there; the result is the additive mask (B, heads, H*W, H*W) in q's dtype.
    """
    height, width = size
    grid = q.unflatten(2, (height, width))  # (B, heads, H, W, d)
    rows = torch.einsum("bnhwc,hkc->bnhwk", grid, get_rel_pos(height, height, rel_pos_h).to(q.dtype))
    columns = torch.einsum("bnhwc,wkc->bnhwk", grid, get_rel_pos(width, width, rel_pos_w).to(q.dtype))
    return (rows[..., :, None] + columns[..., None, :]).flatten(-2).flatten(2, 3)


class SdpaAttention(Attention):
    """segment_anything's ``Attention`` computed by ``scaled_dot_product_attention`` (fused kernels on GPUs).

    Same parameters and state-dict keys; ``use_sdpa`` switches a loaded encoder's blocks to it in place.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, height, width, _ = x.shape
        q, k, v = self.qkv(x).reshape(batch, height * width, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        bias = relative_position_bias(q, self.rel_pos_h, self.rel_pos_w, (height, width)) if self.use_rel_pos else None
        attended = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
        return self.proj(attended.transpose(1, 2).reshape(batch, height, width, -1))


def use_sdpa(encoder: ImageEncoderViT) -> None:
    """Make every block of ``encoder`` attend through ``SdpaAttention`` (weights untouched; idempotent)."""
    for block in encoder.blocks:
        if type(block.attn) not in (Attention, SdpaAttention):
            raise TypeError(f"expected segment_anything Attention, found {type(block.attn).__name__}")
        block.attn.__class__ = SdpaAttention
