"""Where the prompt boxes come from: the ground truth (oracle) or the trained proposal generator (model)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from groprompt.checkpoints import TrainedWeights, build_trained_model
from groprompt.config import ModelConfig

if TYPE_CHECKING:
    from groprompt.models.frozen import FrozenEncoders
    from groprompt.models.groprompt import GroPrompt

BOX_SOURCES = ("model", "oracle")


class BoxSource(Protocol):
    """Per-frame prompt boxes of a sample's expressions."""

    @property
    def needs_embeddings(self) -> bool: ...

    def boxes(self, meta: dict[str, Any], expressions: list[dict[str, Any]], embeddings: np.ndarray | None) -> np.ndarray:
        """(E, T, 4) xyxy boxes in original-frame pixels; NaN rows where the source gives no box."""
        ...


def ground_truth_boxes(meta: dict[str, Any], obj_id: int) -> np.ndarray:
    """(T, 4) xyxy ground-truth boxes of an object in original pixels; NaN where it is absent."""
    per_frame = meta["boxes"].get(str(obj_id)) or [None] * len(meta["frame_names"])
    return np.array([box if box is not None else [np.nan] * 4 for box in per_frame], dtype=np.float64).reshape(-1, 4)


@dataclass(frozen=True)
class OracleBoxes:
    """The ground-truth boxes (the upper bound of a box-prompted segmentor)."""

    @property
    def needs_embeddings(self) -> bool:
        return False

    def boxes(self, meta: dict[str, Any], expressions: list[dict[str, Any]], embeddings: np.ndarray | None) -> np.ndarray:
        return np.stack([ground_truth_boxes(meta, e["obj_id"]) for e in expressions])


class ModelBoxes:
    """The trained proposal generator's top box per frame (online: frame t sees frames <= t only)."""

    def __init__(self, model: GroPrompt, frozen: FrozenEncoders, chunk: int = 8) -> None:
        self.model, self.frozen, self.chunk = model.eval(), frozen, chunk

    @classmethod
    def load(cls, model_config: ModelConfig, weights: TrainedWeights, frozen: FrozenEncoders | None = None) -> ModelBoxes:
        """The model built from ``model_config`` with ``weights`` loaded, beside the frozen encoders (built unless given)."""
        frozen, model = build_trained_model(model_config, weights, frozen)
        return cls(model, frozen)

    @property
    def needs_embeddings(self) -> bool:
        return True

    @torch.no_grad()
    def boxes(self, meta: dict[str, Any], expressions: list[dict[str, Any]], embeddings: np.ndarray | None) -> np.ndarray:
        from groprompt.boxes import cxcywh_to_xyxy
        from groprompt.engine import predict_boxes

        if embeddings is None:
            raise ValueError("model boxes need the sample's SAM embeddings")
        clip = torch.from_numpy(np.asarray(embeddings)).float()[None]
        height, width = meta["height"], meta["width"]
        out = []
        for start in range(0, len(expressions), self.chunk):
            texts = [e["text"] for e in expressions[start : start + self.chunk]]
            predicted, _ = predict_boxes(self.model.proposal, self.frozen, clip.expand(len(texts), *clip.shape[1:]), texts)
            xyxy = cxcywh_to_xyxy(predicted.double()).numpy() * np.array([width, height, width, height])
            out.append(np.clip(xyxy, 0, [width, height, width, height]))
        return np.concatenate(out)
