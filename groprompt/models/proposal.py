"""The trainable proposal generator: text-guided box proposals from cached SAM image embeddings.

Per frame (online: frame t sees frames <= t only):
1. visual tokens = the frame's SAM image embedding, with its difference from frame t-1's (motion; zero on the first
   frame), projected to ``d_model`` plus 2D sine positions and fused with the text (tokens attend to the sentence);
   a feature enhancer (Grounding DINO's, lighter: self-attention among the frame's tokens) lets each token see the
   other objects, which a position ("the leftmost") is relative to;
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

from groprompt.config import LossConfig, ModelConfig
from groprompt.models.frozen import FrozenEncoders
from groprompt.models.generator import FrameOutput
from groprompt.models.text import TextFeatures


@dataclass(frozen=True)
class FrameTokens:
    """A frame's text-fused visual tokens with their query-selection scores and own boxes (no past frame needed)."""

    tokens: torch.Tensor  # (B, N, d) projected visual tokens with positions, fused with the text
    logits: torch.Tensor  # (B, N) query-selection scores
    boxes: torch.Tensor  # (B, N, 4) each token's own proposal


ImageMemory = tuple[torch.Tensor, torch.Tensor]  # one decoder layer's projected image keys (no memory embedding) and values


@dataclass(frozen=True)
class FrameState:
    """What frame t passes on to frame t + 1."""

    memory: tuple[ImageMemory, ...]  # per decoder layer: frame t's projected image keys and values (B, N, d)
    query: torch.Tensor  # (B, d) final top query
    box: torch.Tensor  # (B, 4) its box
    embedding: torch.Tensor  # (P, C, g, g) frame t's SAM image embeddings, one per clip (frame t + 1's motion input)


@dataclass(frozen=True)
class ProjectedText:
    """Sentences in the generator's width: token features (B, L, d), their mask (B, L; True = real token) and, with
    ``model.sentence_film``, each sentence's FiLM scale and shift of the visual tokens (B, 2d)."""

    tokens: torch.Tensor
    mask: torch.Tensor
    film: torch.Tensor | None

    def repeat_interleave(self, repeats: int) -> ProjectedText:
        """Each sentence ``repeats`` times in a row (one per frame of its clip)."""
        film = None if self.film is None else self.film.repeat_interleave(repeats, 0)
        return ProjectedText(self.tokens.repeat_interleave(repeats, 0), self.mask.repeat_interleave(repeats, 0), film)


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


class EnhancerLayer(nn.Module):
    """Self-attention among one frame's visual tokens (positions added to queries and keys), with
    ``text_attention`` a cross-attention from the tokens to the sentence's tokens (Grounding DINO's image-to-text
    fusion), then a feed-forward."""

    def __init__(self, d_model: int, heads: int, ffn_dim: int, dropout: float, text_attention: bool = False) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, heads, dropout=dropout, batch_first=True)
        self.text_attn = nn.MultiheadAttention(d_model, heads, dropout=dropout, batch_first=True) if text_attention else None
        self.ffn = nn.Sequential(nn.Linear(d_model, ffn_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ffn_dim, d_model))
        self.norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(3 if text_attention else 2))
        self.dropout = nn.Dropout(dropout)

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor, text: ProjectedText) -> torch.Tensor:
        q = tokens + positions
        tokens = self.norms[0](tokens + self.dropout(self.self_attn(q, q, tokens, need_weights=False)[0]))
        if self.text_attn is not None:
            attended = self.text_attn(tokens + positions, text.tokens, text.tokens, key_padding_mask=~text.mask, need_weights=False)[0]
            tokens = self.norms[2](tokens + self.dropout(attended))
        return self.norms[1](tokens + self.dropout(self.ffn(tokens)))


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
        image_keys: torch.Tensor,
        image_values: torch.Tensor,
    ) -> torch.Tensor:
        """``image_keys`` and ``image_values`` come projected (``image_memory``, ``key_offsets``)."""
        q = queries + query_pos
        queries = self.norms[0](queries + self.dropout(self.self_attn(q, q, queries, need_weights=False)[0]))
        attended = self.text_attn(queries + query_pos, text, text, key_padding_mask=~text_mask, need_weights=False)[0]
        queries = self.norms[1](queries + self.dropout(attended))
        queries = self.norms[2](queries + self.dropout(self._attend_image(queries + query_pos, image_keys, image_values)))
        return self.norms[3](queries + self.dropout(self.ffn(queries)))

    def image_memory(self, tokens: torch.Tensor) -> ImageMemory:
        """Image-attention keys (before ``key_offsets``) and values of (B, N, d) tokens: projected once per frame, and
        reused as the next frame's memory (the attention is linear in its key input)."""
        _, w_k, w_v = self.image_attn.in_proj_weight.chunk(3)
        _, b_k, b_v = self.image_attn.in_proj_bias.chunk(3)
        return nn.functional.linear(tokens, w_k, b_k), nn.functional.linear(tokens, w_v, b_v)

    def key_offsets(self, embeds: torch.Tensor) -> torch.Tensor:
        """(M, d) learnt memory embeddings (added to the key input) as offsets of the projected keys."""
        return nn.functional.linear(embeds, self.image_attn.in_proj_weight.chunk(3)[1])

    def _attend_image(self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """``image_attn`` (its weights, its heads) on already projected keys and values."""
        attention = self.image_attn
        query = nn.functional.linear(queries, attention.in_proj_weight.chunk(3)[0], attention.in_proj_bias.chunk(3)[0])

        def heads(x: torch.Tensor) -> torch.Tensor:
            return x.unflatten(-1, (attention.num_heads, -1)).transpose(1, 2)

        dropout = attention.dropout if self.training else 0.0
        attended = nn.functional.scaled_dot_product_attention(heads(query), heads(keys), heads(values), dropout_p=dropout)
        return attention.out_proj(attended.transpose(1, 2).flatten(2))


class ProposalGenerator(nn.Module):
    """Text- and time-aware box proposals from cached SAM image embeddings (see the module docstring): the
    ``sam-decoder`` kind of ``groprompt.models.generator.Generator``, trained from scratch."""

    pixel_size = None  # reads no pixels: the cached SAM embeddings only

    def __init__(self, config: ModelConfig, image_dim: int, grid: int, text_dim: int) -> None:
        super().__init__()
        d = config.d_model
        self.config = config
        self.grid = grid
        self.sentence_dim = text_dim  # ModalCon's sentence features: the frozen text encoder's pooled features
        inputs = (2 * image_dim if config.frame_difference else image_dim) + (2 * config.motion_correlation + 1) ** 2 * (
            config.motion_correlation > 0
        )
        kernel = config.visual_kernel
        self.visual_proj = nn.Sequential(nn.Conv2d(inputs, d, kernel, padding=kernel // 2), nn.GroupNorm(32 if d % 32 == 0 else 1, d))
        self.text_proj = nn.Sequential(nn.Linear(text_dim, d), nn.LayerNorm(d))
        self.fusion = nn.MultiheadAttention(d, config.num_heads, batch_first=True)
        self.fusion_norm = nn.LayerNorm(d)
        self.enhancer = nn.ModuleList(
            EnhancerLayer(d, config.num_heads, config.ffn_dim, config.dropout, config.enhancer_text_attention)
            for _ in range(config.enhancer_layers)
        )
        self.film = nn.Linear(text_dim, 2 * d) if config.sentence_film else None
        if self.film is not None:  # starts as the identity: scale 1, shift 0
            nn.init.zeros_(self.film.weight)
            nn.init.zeros_(self.film.bias)
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

    def loss_config(self, config: LossConfig) -> LossConfig:
        """Every loss term applies: no pretrained detector supplies confidences or query selection."""
        return config

    def run(
        self,
        frozen: FrozenEncoders,
        embeddings: torch.Tensor,
        pixels: torch.Tensor | None,
        sentences: list[str],
        previous: torch.Tensor | None = None,
    ) -> tuple[list[FrameOutput], torch.Tensor]:
        """Clips (P, T, C, g, g) and B sentences, P dividing B (sentence b reads clip b mod P) -> one output per frame and
        the pooled sentence features (B, D); ``previous`` (P, C, g, g): the frame before each clip (None: none)."""
        text = frozen.text(sentences)
        return self(embeddings, text, previous), text.pooled

    def stream(self, frozen: FrozenEncoders, sentences: list[str]) -> ProposalStream:
        return ProposalStream(self, frozen, sentences)

    def forward(self, embeddings: torch.Tensor, text: TextFeatures, previous: torch.Tensor | None = None) -> list[FrameOutput]:
        """Run P clips (P, T, C, g, g) online for B sentences, P dividing B (sentence b reads clip b mod P); returns one
        output per frame. ``previous`` (P, C, g, g), the embedding of the frame before each clip, is the first frame's
        motion input (None: the clip starts its video, no motion). What needs no past frame runs for all frames at once,
        the visual projection once per clip (not per sentence); the decoder then steps frame by frame."""
        projected = self.project_text(text)
        clips, frames = embeddings.shape[:2]
        batch = projected.tokens.shape[0]
        if batch % clips:
            raise ValueError(f"{batch} sentences over {clips} clips: the clips must repeat a whole number of times")
        first = embeddings[:, :1] if previous is None else previous[:, None]  # without a past, frame 0 is its own
        visual = self.project_visual(self.visual_input(embeddings, torch.cat([first, embeddings[:, :-1]], dim=1)).flatten(0, 1))
        rows = (
            (torch.arange(batch, device=visual.device) % clips)[:, None] * frames + torch.arange(frames, device=visual.device)
        ).flatten()
        clip = self.encode_tokens(visual[rows], projected.repeat_interleave(frames))
        memories = [[_frames(x, frames) for x in layer.image_memory(clip.tokens)] for layer in self.layers]
        per_frame = [_frames(x, frames) for x in (clip.tokens, clip.logits, clip.boxes)]
        outputs, state = [], None
        for t in range(frames):
            encoded = FrameTokens(*(x[t] for x in per_frame))
            output, state = self.decode_frame(encoded, [(k[t], v[t]) for k, v in memories], projected, state, embeddings[:, t])
            outputs.append(output)
        return outputs

    def project_text(self, text: TextFeatures) -> ProjectedText:
        """The sentences in the generator's width (compute once per clip, reuse per frame)."""
        return ProjectedText(self.text_proj(text.tokens), text.mask, None if self.film is None else self.film(text.pooled))

    def forward_frame(self, embedding: torch.Tensor, text: ProjectedText, state: FrameState | None) -> tuple[FrameOutput, FrameState]:
        """One frame (1, C, g, g), seen by all B projected sentences, given the previous frame's state."""
        previous = embedding if state is None else state.embedding
        visual = self.project_visual(self.visual_input(embedding, previous))
        encoded = self.encode_tokens(visual.expand(text.tokens.shape[0], *visual.shape[1:]), text)
        memory = [layer.image_memory(encoded.tokens) for layer in self.layers]
        return self.decode_frame(encoded, memory, text, state, embedding)

    def project_visual(self, visual: torch.Tensor) -> torch.Tensor:
        """Frames' visual input (F, C', g, g) to visual tokens (F, N, d), before any sentence."""
        return self.visual_proj(visual).flatten(2).transpose(1, 2)

    def visual_input(self, embedding: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """What ``visual_proj`` reads (channels on dim -3): the embedding, with ``model.frame_difference`` followed by
        its difference from the previous frame's, and with ``model.motion_correlation`` by its local correlation with
        the previous frame (``local_correlation``)."""
        parts = [embedding]
        if self.config.frame_difference:
            parts.append(embedding - previous)
        if self.config.motion_correlation:
            parts.append(local_correlation(embedding, previous, self.config.motion_correlation))
        return torch.cat(parts, dim=-3)

    def encode_tokens(self, tokens: torch.Tensor, text: ProjectedText) -> FrameTokens:
        """Visual tokens (B, N, d) with their projected sentences to text-fused, enhanced visual tokens, their scores
        and boxes. With ``model.sentence_film`` the sentence first scales and shifts every token."""
        if text.film is not None:
            scale, shift = text.film.chunk(2, dim=-1)
            tokens = tokens * (1 + scale[:, None]) + shift[:, None]
        tokens = tokens + self.positions
        fused = self.fusion(tokens, text.tokens, text.tokens, key_padding_mask=~text.mask, need_weights=False)[0]
        tokens = self.fusion_norm(tokens + fused)
        for layer in self.enhancer:
            tokens = layer(tokens, self.positions, text)
        return FrameTokens(tokens, self.confidence(tokens, text.tokens, text.mask), self._token_boxes(tokens))

    def decode_frame(
        self,
        encoded: FrameTokens,
        memory: list[ImageMemory],
        text: ProjectedText,
        state: FrameState | None,
        embedding: torch.Tensor,
    ) -> tuple[FrameOutput, FrameState]:
        """Query selection and the decoder on one frame's tokens and per-layer image memory, given the previous state;
        ``embedding`` (B, C, g, g) is the frame's SAM embedding, kept in the state for the next frame's motion input."""
        tokens, token_logits = encoded.tokens, encoded.logits
        batch = tokens.shape[0]
        k = min(self.config.num_queries, tokens.shape[1])
        selected = token_logits.topk(k, dim=1).indices
        rows = torch.arange(batch, device=tokens.device)[:, None]
        queries = tokens[rows, selected]
        anchors = encoded.boxes[rows, selected]
        anchor_logits = token_logits[rows, selected]
        previous = self.config.propagate and state is not None
        if previous:
            queries = torch.cat([queries, state.query[:, None]], dim=1)
            anchors = torch.cat([anchors, state.box[:, None]], dim=1)
            anchor_logits = torch.cat([anchor_logits, anchor_logits.new_full((batch, 1), -1e4)], dim=1)
        level_boxes, level_logits = [anchors], [anchor_logits]

        reference = anchors.detach()
        for index, (layer, box_head) in enumerate(zip(self.layers, self.box_heads)):
            offsets = layer.key_offsets(self.memory_embed)  # current frame, previous frame
            keys, values = memory[index][0] + offsets[0], memory[index][1]
            if previous:
                keys = torch.cat([keys, state.memory[index][0] + offsets[1]], dim=1)
                values = torch.cat([values, state.memory[index][1]], dim=1)
            queries = layer(queries, self.query_pos(box_position(reference, self.config.d_model)), text.tokens, text.mask, keys, values)
            boxes = torch.sigmoid(inverse_sigmoid(reference) + box_head(queries))
            level_boxes.append(boxes)
            level_logits.append(self.confidence(queries, text.tokens, text.mask))
            reference = boxes.detach()

        logits = torch.stack(level_logits)
        boxes = torch.stack(level_boxes)
        best = logits[-1].argmax(-1)
        batch_rows = torch.arange(batch, device=tokens.device)
        new_state = FrameState(tuple(memory), queries[batch_rows, best], boxes[-1, batch_rows, best].detach(), embedding)
        return FrameOutput(boxes, logits, token_logits, self.centres, encoded.boxes), new_state

    def _token_boxes(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, N, 4) each token's own proposal: its cell centre moved by a predicted offset, with a predicted size."""
        raw = self.token_box(tokens)
        cell = 1.0 / self.grid
        centre = self.centres + torch.tanh(raw[..., :2]) * cell
        size = torch.exp(raw[..., 2:].clamp(-4, 4)) * (2 * cell)
        return torch.cat([centre.clamp(0, 1), size.clamp(1e-3, 1)], dim=-1)


class ProposalStream:
    """One video's sentences through the generator, frame after frame: frame t sees frames <= t only, through the
    state each ``step`` carries to the next. The batch is the sentences. Call under no_grad or inference_mode,
    the same for every step."""

    def __init__(self, proposal: ProposalGenerator, frozen: FrozenEncoders, sentences: list[str]) -> None:
        self.proposal = proposal
        self.text = proposal.project_text(frozen.text(list(sentences)))
        self.state: FrameState | None = None

    def step(self, embedding: torch.Tensor, pixels: torch.Tensor | None = None) -> FrameOutput:
        """The output of the next frame, given its SAM image embedding (C, g, g); ``pixels`` are not read."""
        output, self.state = self.proposal.forward_frame(embedding[None], self.text, self.state)
        return output


def local_correlation(current: torch.Tensor, previous: torch.Tensor, radius: int) -> torch.Tensor:
    """(..., C, g, g) embeddings of a frame and the one before to (..., (2r + 1)^2, g, g): the cosine similarity of
    each cell of ``current`` to the cells of ``previous`` within ``radius`` cells (zero outside the grid), offsets
    row-major from (-r, -r): where a cell's content came from, so which way it moves (a correlation layer, as
    optical-flow networks use)."""
    lead, (channels, height, width) = current.shape[:-3], current.shape[-3:]
    now = nn.functional.normalize(current.reshape(-1, channels, height, width), dim=1)
    before = nn.functional.normalize(previous.reshape(-1, channels, height, width), dim=1)
    window = 2 * radius + 1
    neighbours = nn.functional.unfold(before, window, padding=radius).view(-1, channels, window * window, height, width)
    return (neighbours * now[:, :, None]).sum(1).reshape(*lead, window * window, height, width)


def _frames(x: torch.Tensor, frames: int) -> tuple[torch.Tensor, ...]:
    """(B * T, ...) to T tensors (B, ...): one unbind, so the backward pass gathers all frames' gradients at once."""
    return x.unflatten(0, (-1, frames)).unbind(1)


def count_trainable(module: nn.Module) -> int:
    """Number of parameters that receive gradients."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
