"""Where the prompt boxes come from: the trained proposal generator (model), the ground truth (oracle), or a random
object's ground truth whatever the sentence says (sentence-blind); each box with its confidence (the generator's,
1 for a ground-truth box)."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from groprompt.boxes import union_box
from groprompt.checkpoints import TrainedWeights, build_trained_model
from groprompt.config import ModelConfig
from groprompt.data.pixels import frame_pixels
from groprompt.data.shards import sample_groups
from groprompt.models.prompts import frame_prompts

if TYPE_CHECKING:
    from groprompt.models.frozen import FrozenEncoders
    from groprompt.models.generator import FrameStream
    from groprompt.models.groprompt import GroPrompt


@dataclass(frozen=True)
class Prompts:
    """A sample's prompts: boxes (E, T, K, 4) xyxy in original-frame pixels, K boxes per expression and frame (one but
    in the set mode; NaN rows where the source gives no box), and their confidences (E, T, K) in [0, 1] (a segmentor
    with memory weighs a box by it, ``groprompt.models.segmentors``). An expression's mask is the union of its boxes' masks."""

    boxes: np.ndarray
    scores: np.ndarray

    def union_boxes(self) -> np.ndarray:
        """(E, T, 4) the box around each expression's boxes on each frame (its one box, but in the set mode); NaN
        where it has none: the box that box IoU scores."""
        return union_box(torch.from_numpy(self.boxes)).numpy()


def certain(boxes: np.ndarray) -> Prompts:
    """One box (E, T, 4) per expression and frame that is sure where it exists: confidence 1 for a box, 0 for a NaN row."""
    return Prompts(boxes[:, :, None], np.isfinite(boxes).all(axis=-1).astype(np.float64)[:, :, None])


class BoxSource(Protocol):
    """Per-frame prompt boxes of a sample's expressions, with their confidences."""

    @property
    def needs_embeddings(self) -> bool: ...

    @property
    def needs_frames(self) -> bool:
        """Whether ``boxes`` reads the sample's RGB frames (a proposal generator that reads pixels)."""
        ...

    def prompts(
        self,
        meta: dict[str, Any],
        expressions: list[dict[str, Any]],
        embeddings: np.ndarray | None,
        frames: Sequence[np.ndarray] | None = None,
    ) -> Prompts:
        """The expressions' boxes on the sample's T frames and their confidences."""
        ...


def ground_truth_boxes(meta: dict[str, Any], obj_id: int) -> np.ndarray:
    """(T, 4) xyxy ground-truth boxes of an object in original pixels; NaN where it is absent."""
    per_frame = meta["boxes"].get(str(obj_id)) or [None] * len(meta["frame_names"])
    return np.array([box if box is not None else [np.nan] * 4 for box in per_frame], dtype=np.float64).reshape(-1, 4)


class FromGroundTruth:
    """A reference box source: it reads the samples' ground-truth boxes only (no embeddings, no frames)."""

    @property
    def needs_embeddings(self) -> bool:
        return False

    @property
    def needs_frames(self) -> bool:
        return False


@dataclass(frozen=True)
class OracleBoxes(FromGroundTruth):
    """The ground-truth boxes (the upper bound of a box-prompted segmentor)."""

    def prompts(
        self,
        meta: dict[str, Any],
        expressions: list[dict[str, Any]],
        embeddings: np.ndarray | None,
        frames: Sequence[np.ndarray] | None = None,
    ) -> Prompts:
        return certain(np.stack([ground_truth_boxes(meta, e["obj_id"]) for e in expressions]))


@dataclass(frozen=True)
class SentenceBlindBoxes(FromGroundTruth):
    """Per frame, the ground-truth box of one object drawn uniformly among those present in the frame, the same for
    every sentence: what a model that localises objects perfectly but ignores language gets (about one in the number
    of objects). The candidates are the objects whose boxes the sample keeps, never a group target (a union of
    objects). The draw depends on ``seed``, the video and the frame's name only; a frame without objects gets NaN."""

    seed: int = 0

    def prompts(
        self,
        meta: dict[str, Any],
        expressions: list[dict[str, Any]],
        embeddings: np.ndarray | None,
        frames: Sequence[np.ndarray] | None = None,
    ) -> Prompts:
        groups = sample_groups(meta)
        objects = [ground_truth_boxes(meta, obj) for obj in sorted(map(int, meta["boxes"])) if obj not in groups]
        per_frame = [self._drawn_box(meta["video_id"], name, [boxes[t] for boxes in objects]) for t, name in enumerate(meta["frame_names"])]
        chosen = np.array(per_frame, dtype=np.float64).reshape(-1, 4)
        return certain(np.repeat(chosen[None], len(expressions), axis=0))

    def _drawn_box(self, video: str, frame: str, candidates: list[np.ndarray]) -> np.ndarray:
        """One of the present (finite) ``candidates``, drawn from a generator seeded by ``seed``, video and frame."""
        present = [box for box in candidates if np.isfinite(box).all()]
        if not present:
            return np.full(4, np.nan)
        rng = np.random.default_rng([self.seed, zlib.crc32(f"{video}/{frame}".encode())])
        return present[int(rng.integers(len(present)))]


REFERENCE_SOURCES: dict[str, Callable[[], BoxSource]] = {"oracle": OracleBoxes, "sentence-blind": SentenceBlindBoxes}
"""Box sources that need no trained model, by name."""
BOX_SOURCES = ("model", *REFERENCE_SOURCES)


class ModelBoxes:
    """The trained proposal generator's top box per frame and its confidence (``FrameOutput.top_scores``), or in the set
    mode the boxes it keeps (``groprompt.models.prompts.frame_prompts``), online
    over a whole video: frame t sees frames <= t only, and the state carries over from one sample of a video to the
    next (the same boxes as inference gives), so a video's samples must come in order
    (``groprompt.evaluation.scoring.evaluate_shards``)."""

    def __init__(self, model: GroPrompt, frozen: FrozenEncoders) -> None:
        self.model, self.frozen = model.eval(), frozen
        self._online: FrameStream | None = None
        self._continues_at: tuple[str, int, tuple[str, ...]] | None = None  # (video, next frame, exp ids) of the state

    @classmethod
    def load(cls, model_config: ModelConfig, weights: TrainedWeights, frozen: FrozenEncoders | None = None) -> ModelBoxes:
        """The model built from ``model_config`` with ``weights`` loaded, beside the frozen encoders (built unless given)."""
        frozen, model = build_trained_model(model_config, weights, frozen)
        return cls(model, frozen)

    @property
    def needs_embeddings(self) -> bool:
        return True

    @property
    def needs_frames(self) -> bool:
        return self.model.proposal.pixel_size is not None

    @torch.no_grad()
    def prompts(
        self,
        meta: dict[str, Any],
        expressions: list[dict[str, Any]],
        embeddings: np.ndarray | None,
        frames: Sequence[np.ndarray] | None = None,
    ) -> Prompts:
        if embeddings is None:
            raise ValueError("model boxes need the sample's SAM embeddings")
        if self.needs_frames and frames is None:
            raise ValueError("this model's proposal generator reads the sample's frames")
        exp_ids = tuple(str(e["exp_id"]) for e in expressions)
        if self._online is None or self._continues_at != (meta["video_id"], int(meta["start"]), exp_ids):
            self._online = self.model.proposal.stream(self.frozen, [e["text"] for e in expressions])
        height, width = meta["height"], meta["width"]
        size = self.model.proposal.pixel_size
        pixels = [frame_pixels(frame, size) for frame in frames] if frames is not None else [None] * len(embeddings)
        outputs = [self._online.step(torch.from_numpy(e).float(), p) for e, p in zip(embeddings, pixels)]
        boxes, scores = zip(*(frame_prompts(output, self.model.set_threshold, height, width) for output in outputs))
        self._continues_at = (meta["video_id"], int(meta["start"]) + len(embeddings), exp_ids)
        slots = max(frame.shape[1] for frame in boxes)  # the set mode: frame 0 has no propagated query, the others one
        boxes = [np.pad(b, [(0, 0), (0, slots - b.shape[1]), (0, 0)], constant_values=np.nan) for b in boxes]
        scores = [np.pad(s, [(0, 0), (0, slots - s.shape[1])]) for s in scores]
        return Prompts(np.stack(boxes, axis=1).astype(np.float64), np.stack(scores, axis=1).astype(np.float64))
