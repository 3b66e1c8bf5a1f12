"""The ModalCon head (paper eq. 3): a video-level content feature of the object that the prompts point at."""

from __future__ import annotations

import torch
from torch import nn


class ModalConHead(nn.Module):
    """Cross-attention with the prompt embedding as query over the frame's SAM image embedding,
    averaged over the clip's frames, projected into the sentence-feature space (unit length)."""

    def __init__(self, embed_dim: int, text_dim: int, num_heads: int = 8) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(embed_dim, num_heads, batch_first=True)
        self.norm = nn.LayerNorm(embed_dim)
        self.project = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.ReLU(), nn.Linear(embed_dim, text_dim))

    def forward(self, prompts: torch.Tensor, embeddings: torch.Tensor, image_pe: torch.Tensor) -> torch.Tensor:
        """prompts (B, T, P, C), embeddings (B, T, C, g, g), SAM's dense positional encoding (C, g, g) -> (B, D)."""
        batch, frames, points, channels = prompts.shape
        queries = prompts.reshape(batch * frames, points, channels)
        values = embeddings.reshape(batch * frames, channels, -1).transpose(1, 2)
        keys = values + image_pe.reshape(channels, -1).T
        attended = self.attention(queries, keys, values, need_weights=False)[0]
        per_frame = self.norm(attended).mean(1).reshape(batch, frames, channels)
        video = per_frame.mean(1)  # temporal average pooling
        return nn.functional.normalize(self.project(video), dim=-1)
