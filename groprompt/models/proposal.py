"""The trainable proposal generator: text-guided box proposals from cached SAM image embeddings.

Per frame (online: frame t sees frames <= t only):
1. visual tokens = the frame's SAM image embedding projected to ``d_model`` plus 2D sine positions,
   lightly fused with the text (tokens attend to the sentence);
2. language-guided query selection (Grounding DINO style): the top-K tokens by similarity to the text
   give the object queries (content) and, through a per-token box head, their anchor boxes;
3. the previous frame's top query and box are appended as one more query (online propagation), and the
   previous frame's tokens are offered as memory to the image cross-attention, so motion is visible;
4. a cross-modality decoder (query self-attention, cross-attention to text, to image, FFN) refines the
   boxes layer by layer; each layer gives boxes (cx, cy, w, h in [0, 1]) and text-aware confidences.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from groprompt.config import ModelConfig
from groprompt.models.text import TextFeatures


@dataclass(frozen=True)
class FrameOutput:
    """Predictions for one frame. Level 0 holds the selected tokens' own proposals, then one level per layer."""

    boxes: torch.Tensor  # (levels, B, Q, 4) normalised cxcywh
    logits: torch.Tensor  # (levels, B, Q) confidences
    token_logits: torch.Tensor  # (B, N) query-selection scores of every visual token
    token_centres: torch.Tensor  # (N, 2) normalised (x, y) of each token's cell

    def top_boxes(self) -> torch.Tensor:
        """(B, 4) the final layer's top-confidence box per sample."""
        best = self.logits[-1].argmax(-1)
        return self.boxes[-1, torch.arange(best.shape[0]), best]


@dataclass(frozen=True)
class FrameState:
    """What frame t passes on to frame t + 1."""

    tokens: torch.Tensor  # (B, N, d) projected visual tokens with positions
    query: torch.Tensor  # (B, d) final top query
    box: torch.Tensor  # (B, 4) its box


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    x = x.clamp(eps, 1 - eps)
    return torch.log(x / (1 - x))


def grid_centres(grid: int) -> torch.Tensor:
    """(grid * grid, 2) normalised (x, y) centres of a square grid's cells, row-major."""
    centres = (torch.arange(grid, dtype=torch.float32) + 0.5) / grid
    y, x = torch.meshgrid(centres, centres, indexing="ij")
    return torch.stack([x.flatten(), y.flatten()], dim=-1)


def sine_position_2d(centres: torch.Tensor, dim: int) -> torch.Tensor:
    """(N, dim) fixed sine encodings of (x, y) points: half the channels for y, half for x."""
    return torch.cat([_sine(centres[:, 1], dim // 2), _sine(centres[:, 0], dim // 2)], dim=-1)


def _sine(values: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    frequencies = temperature ** (2 * torch.arange(dim // 2, device=values.device, dtype=torch.float32) / dim)
    angles = values[..., None] * 2 * math.pi / frequencies
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def box_position(boxes: torch.Tensor, dim: int) -> torch.Tensor:
    """(..., 4) cxcywh boxes to (..., 4 * (dim // 4)) sine encodings (DAB-DETR style anchors)."""
    return torch.cat([_sine(boxes[..., i], dim // 4) for i in range(4)], dim=-1)


class MLP(nn.Module):
    """A small ReLU perceptron."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, layers: int) -> None:
        super().__init__()
        dims = [in_dim] + [hidden] * (layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x


class TextConfidence(nn.Module):
    """Text-aware confidence: the best match of a query against the sentence's tokens."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.project = nn.Linear(d_model, d_model)
        self.bias = nn.Parameter(torch.tensor(-2.0))
        self.scale = 1 / math.sqrt(d_model)

    def forward(self, queries: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        similarity = torch.einsum("bqd,bld->bql", self.project(queries), text) * self.scale
        similarity = similarity.masked_fill(~text_mask[:, None, :], float("-inf"))
        return similarity.amax(-1) + self.bias


class DecoderLayer(nn.Module):
    """Query self-attention, cross-attention to text, cross-attention to image, feed-forward."""

    def __init__(self, d_model: int, heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, heads, dropout=dropout, batch_first=True)
        self.text_attn = nn.MultiheadAttention(d_model, heads, dropout=dropout, batch_first=True)
        self.image_attn = nn.MultiheadAttention(d_model, heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(d_model, ffn_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn_dim, d_model))
        self.norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(4))
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        queries: torch.Tensor,
        query_pos: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        image: torch.Tensor,
        image_keys: torch.Tensor,
    ) -> torch.Tensor:
        q = queries + query_pos
        queries = self.norms[0](queries + self.dropout(self.self_attn(q, q, queries, need_weights=False)[0]))
        attended = self.text_attn(queries + query_pos, text, text, key_padding_mask=~text_mask, need_weights=False)[0]
        queries = self.norms[1](queries + self.dropout(attended))
        attended = self.image_attn(queries + query_pos, image_keys, image, need_weights=False)[0]
        queries = self.norms[2](queries + self.dropout(attended))
        return self.norms[3](queries + self.dropout(self.ffn(queries)))


class ProposalGenerator(nn.Module):
    """Text- and time-aware box proposals from cached SAM image embeddings (see the module docstring)."""

    def __init__(self, config: ModelConfig, image_dim: int, grid: int, text_dim: int) -> None:
        super().__init__()
        d = config.d_model
        self.config = config
        self.grid = grid
        self.visual_proj = nn.Sequential(nn.Conv2d(image_dim, d, kernel_size=1), nn.GroupNorm(32 if d % 32 == 0 else 1, d))
        self.text_proj = nn.Sequential(nn.Linear(text_dim, d), nn.LayerNorm(d))
        self.fusion = nn.MultiheadAttention(d, config.num_heads, batch_first=True)
        self.fusion_norm = nn.LayerNorm(d)
        self.memory_embed = nn.Parameter(torch.zeros(2, d))  # current frame, previous frame
        self.token_box = MLP(d, d, 4, 2)  # per-token proposal: offsets from the cell centre, log-size
        self.query_pos = MLP(d, d, d, 2)
        self.layers = nn.ModuleList(DecoderLayer(d, config.num_heads, config.ffn_dim, config.dropout) for _ in range(config.decoder_layers))
        self.box_heads = nn.ModuleList(MLP(d, d, 4, 3) for _ in range(config.decoder_layers))
        self.confidence = TextConfidence(d)
        self.register_buffer("centres", grid_centres(grid), persistent=False)
        self.register_buffer("positions", sine_position_2d(self.centres, d), persistent=False)
        for head in self.box_heads:
            nn.init.zeros_(head.layers[-1].weight)
            nn.init.zeros_(head.layers[-1].bias)

    def forward(self, embeddings: torch.Tensor, text: TextFeatures) -> list[FrameOutput]:
        """Run a clip (B, T, C, g, g) online, frame by frame; returns one output per frame."""
        text_tokens = self.project_text(text)
        outputs, state = [], None
        for t in range(embeddings.shape[1]):
            output, state = self.forward_frame(embeddings[:, t], text_tokens, text.mask, state)
            outputs.append(output)
        return outputs

    def project_text(self, text: TextFeatures) -> torch.Tensor:
        """Text token features in the decoder's width (compute once per clip, reuse per frame)."""
        return self.text_proj(text.tokens)

    def forward_frame(
        self, embedding: torch.Tensor, text_tokens: torch.Tensor, text_mask: torch.Tensor, state: FrameState | None
    ) -> tuple[FrameOutput, FrameState]:
        """One frame (B, C, g, g) given projected text tokens and the previous frame's state."""
        batch = embedding.shape[0]
        tokens = self.visual_proj(embedding).flatten(2).transpose(1, 2) + self.positions
        fused = self.fusion(tokens, text_tokens, text_tokens, key_padding_mask=~text_mask, need_weights=False)[0]
        tokens = self.fusion_norm(tokens + fused)

        token_logits = self.confidence(tokens, text_tokens, text_mask)
        token_boxes = self._token_boxes(tokens)
        k = min(self.config.num_queries, tokens.shape[1])
        selected = token_logits.topk(k, dim=1).indices
        rows = torch.arange(batch, device=tokens.device)[:, None]
        queries = tokens[rows, selected]
        anchors = token_boxes[rows, selected]
        anchor_logits = token_logits[rows, selected]
        image_keys, image = tokens + self.memory_embed[0], tokens
        if self.config.propagate and state is not None:
            queries = torch.cat([queries, state.query[:, None]], dim=1)
            anchors = torch.cat([anchors, state.box[:, None]], dim=1)
            anchor_logits = torch.cat([anchor_logits, anchor_logits.new_full((batch, 1), -1e4)], dim=1)
            image_keys = torch.cat([image_keys, state.tokens + self.memory_embed[1]], dim=1)
            image = torch.cat([image, state.tokens], dim=1)
        level_boxes, level_logits = [anchors], [anchor_logits]

        reference = anchors.detach()
        for layer, box_head in zip(self.layers, self.box_heads):
            queries = layer(
                queries, self.query_pos(box_position(reference, self.config.d_model)), text_tokens, text_mask, image, image_keys
            )
            boxes = torch.sigmoid(inverse_sigmoid(reference) + box_head(queries))
            level_boxes.append(boxes)
            level_logits.append(self.confidence(queries, text_tokens, text_mask))
            reference = boxes.detach()

        logits = torch.stack(level_logits)
        boxes = torch.stack(level_boxes)
        best = logits[-1].argmax(-1)
        batch_rows = torch.arange(batch, device=tokens.device)
        new_state = FrameState(tokens=tokens, query=queries[batch_rows, best], box=boxes[-1, batch_rows, best].detach())
        return FrameOutput(boxes, logits, token_logits, self.centres), new_state

    def _token_boxes(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, N, 4) each token's own proposal: its cell centre moved by a predicted offset, with a predicted size."""
        raw = self.token_box(tokens)
        cell = 1.0 / self.grid
        centre = self.centres + torch.tanh(raw[..., :2]) * cell
        size = torch.exp(raw[..., 2:].clamp(-4, 4)) * (2 * cell)
        return torch.cat([centre.clamp(0, 1), size.clamp(1e-3, 1)], dim=-1)


def count_trainable(module: nn.Module) -> int:
    """Number of parameters that receive gradients."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
