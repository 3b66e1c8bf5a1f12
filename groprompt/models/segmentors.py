"""Box -> mask backends behind one interface.

- ``sam``: the method. The frozen SAM prompt encoder and mask decoder on the frame's cached image embedding.
- ``sam-hq``: HQ-SAM's high-quality mask (the GroPrompt authors' segmentor), ``groprompt.models.sam_hq``.
- ``sam2``: SAM 2 with its memory of the video's past frames, ``groprompt.models.sam2_video``.
- ``grabcut``: OpenCV GrabCut initialised from the box; needs no weights (the offline stand-in for SAM).
- ``box``: the box itself, filled; a floor for comparisons.

Boxes are (N, 4) xyxy in frame pixels with exclusive right/bottom edges (``groprompt.data.records``); a pixel
belongs to a box when its centre lies inside. Every backend returns bool masks (N, H, W).

Evaluation and inference open one ``SegmentorStream`` per video (``open_stream``) with the video's N queries and
step it frame by frame in order: a ``VideoSegmentor`` (``sam2``) keeps a memory there, a per-frame ``Segmentor``
is wrapped in a ``FrameStream`` and sees each frame alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import cv2
import numpy as np
import torch

from groprompt.config import ModelConfig
from groprompt.errors import ConfigError
from groprompt.models.sam import FrozenSam
from groprompt.models.segmentor_inputs import FOLDER_MODEL_TYPES, check_boxes, frame_size, rgb_frame

if TYPE_CHECKING:
    from groprompt.models.sam2_video import Sam2Segmentor
    from groprompt.models.sam_hq import SamHQSegmentor

_MIN_MARGIN = 8  # pixels of context around the box in GrabCut's crop, whatever the box size
_MIN_SAMPLES = 25  # fewer pixels than this in the box or around it: too few for GrabCut's colour models


class Segmentor(Protocol):
    """Turns boxes on one frame into masks; ``needs_frame``/``needs_embedding`` say what the caller must load."""

    @property
    def needs_frame(self) -> bool: ...

    @property
    def needs_embedding(self) -> bool: ...

    def segment(
        self,
        frame: np.ndarray | None,
        boxes: np.ndarray,
        embedding: torch.Tensor | None = None,
        size: tuple[int, int] | None = None,
    ) -> np.ndarray:
        """Bool masks (N, H, W) of xyxy ``boxes`` (N, 4); ``size`` (H, W) defaults to the frame's."""
        ...


class SegmentorStream(Protocol):
    """One video's masks, frame after frame in order; a frame's masks depend on frames up to it only (online)."""

    @property
    def stateful(self) -> bool:
        """Whether it remembers past frames: then every frame must be stepped, in order; else frames may be skipped."""
        ...

    def step(
        self,
        frame: np.ndarray | None,
        boxes: np.ndarray,
        scores: np.ndarray,
        embedding: torch.Tensor | None = None,
        size: tuple[int, int] | None = None,
    ) -> np.ndarray:
        """Bool masks (N, H, W) of the video's N objects on the next frame, from xyxy ``boxes`` (N, 4; a NaN row:
        no box on this frame) and the boxes' confidences ``scores`` (N,) in [0, 1]."""
        ...


@runtime_checkable
class VideoSegmentor(Protocol):
    """A segmentor with a memory of the video: it opens one stream per video."""

    @property
    def needs_frame(self) -> bool: ...

    @property
    def needs_embedding(self) -> bool: ...

    def open(self, objects: int) -> SegmentorStream:
        """A stream over a new video with ``objects`` objects (queries)."""
        ...


@dataclass(frozen=True)
class FrameStream:
    """A per-frame segmentor as a stream: each distinct finite box of a frame is segmented once, a NaN box gives an
    empty mask, and the confidences are not read."""

    segmentor: Segmentor

    @property
    def stateful(self) -> bool:
        return False

    def step(
        self,
        frame: np.ndarray | None,
        boxes: np.ndarray,
        scores: np.ndarray,
        embedding: torch.Tensor | None = None,
        size: tuple[int, int] | None = None,
    ) -> np.ndarray:
        size = frame_size(frame, size)
        boxes = np.asarray(boxes, dtype=np.float64)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"expected xyxy boxes of shape (N, 4), got shape {boxes.shape}")
        masks = np.zeros((len(boxes), *size), dtype=bool)
        finite = np.isfinite(boxes).all(axis=1)
        if finite.any():
            unique, inverse = np.unique(boxes[finite], axis=0, return_inverse=True)
            masks[finite] = self.segmentor.segment(frame, unique, embedding=embedding, size=size)[inverse.reshape(-1)]
        return masks


def open_stream(segmentor: Segmentor | VideoSegmentor, objects: int) -> SegmentorStream:
    """A stream over a new video with ``objects`` objects: the segmentor's own, or a ``FrameStream``."""
    if isinstance(segmentor, VideoSegmentor):
        return segmentor.open(objects)
    return FrameStream(segmentor)


def step_sets(
    stream: SegmentorStream,
    frame: np.ndarray | None,
    boxes: np.ndarray,
    scores: np.ndarray,
    embedding: torch.Tensor | None = None,
    size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Bool masks (N, H, W) of N objects on the stream's next frame, each prompted by K xyxy boxes (N, K, 4; a NaN row:
    no box) with confidences (N, K): the union of its boxes' masks (the set mode, ``model.multi_object``). With K = 1
    this is ``stream.step``; several boxes per object need a stream without memory (SAM 2 tracks one box per object)."""
    n, slots = boxes.shape[:2]
    if slots == 1:
        return stream.step(frame, boxes[:, 0], scores[:, 0], embedding=embedding, size=size)
    if stream.stateful:
        raise ValueError("a segmentor with memory takes one box per object, not a set")
    masks = stream.step(frame, boxes.reshape(-1, 4), scores.reshape(-1), embedding=embedding, size=size)
    return masks.reshape(n, slots, *masks.shape[1:]).any(axis=1)


def _stack(masks: list[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    return np.stack(masks) if masks else np.zeros((0, *size), dtype=bool)


def _pixel_window(box: np.ndarray, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """Pixel range (x0, y0, x1, y1), exclusive ends, of the pixels whose centres lie in ``box``, clipped (x0 <= x1)."""
    x0, y0 = np.ceil(box[:2] - 0.5).astype(int)
    x1, y1 = np.ceil(box[2:] - 0.5).astype(int)
    height, width = size
    x0, y0 = min(max(x0, 0), width), min(max(y0, 0), height)
    return x0, y0, min(max(x1, x0), width), min(max(y1, y0), height)


def box_mask(box: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The (H, W) bool mask of one xyxy box (empty for a degenerate or off-frame box)."""
    mask = np.zeros(size, dtype=bool)
    x0, y0, x1, y1 = _pixel_window(box, size)
    mask[y0:y1, x0:x1] = True
    return mask


@dataclass(frozen=True)
class BoxSegmentor:
    """The filled box: no model, no frame."""

    @property
    def needs_frame(self) -> bool:
        return False

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
        size = frame_size(frame, size)
        return _stack([box_mask(box, size) for box in check_boxes(boxes)], size)


@dataclass(frozen=True)
class SamSegmentor:
    """The method: frozen SAM prompt encoder + mask decoder on the frame's cached image embedding."""

    sam: FrozenSam
    multimask: bool = False

    @property
    def needs_frame(self) -> bool:
        return False

    @property
    def needs_embedding(self) -> bool:
        return True

    def segment(
        self,
        frame: np.ndarray | None,
        boxes: np.ndarray,
        embedding: torch.Tensor | None = None,
        size: tuple[int, int] | None = None,
    ) -> np.ndarray:
        if embedding is None:
            raise ValueError("the sam segmentor needs the frame's image embedding")
        masks, _ = self.sam.decode(embedding, check_boxes(boxes), frame_size(frame, size), self.multimask)
        return masks.cpu().numpy()


@dataclass(frozen=True)
class GrabCutSegmentor:
    """OpenCV GrabCut from the box (``GC_INIT_WITH_RECT``): the weight-free stand-in for SAM.

    No pretrained SAM checkpoint can be had on these machines, and a randomly initialised SAM gives
    meaningless masks, so offline runs and the demo turn boxes into masks with this instead. It needs the
    frame (RGB uint8) and no embedding.

    ``crop_margin``: run on a crop around the box, widened on each side by this fraction of the box's
    size (at least 8 pixels), instead of the whole frame (``None``).
    ``max_side``: downscale the working image so its longest side is at most this many pixels (``None``:
    full resolution); the mask is scaled back with nearest-neighbour interpolation.
    The defaults were measured on 32 ground-truth boxes of Ref-DAVIS17 frames (854x480, 2-core CPU): mean J
    0.70 at 0.38 s CPU per box, against 0.69 at 1.6 s on the whole full-resolution frame (filled box: 0.49).
    Boxes are clipped to the frame. A box too small for GrabCut's colour models, one that leaves too little
    background around it, or one where GrabCut finds no foreground gives the filled box.
    OpenCV's random generator (of the calling thread) is reseeded before each box, so results repeat.
    """

    iterations: int = 5
    crop_margin: float | None = 0.25
    max_side: int | None = 320

    @property
    def needs_frame(self) -> bool:
        return True

    @property
    def needs_embedding(self) -> bool:
        return False

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {self.iterations}")
        if self.crop_margin is not None and self.crop_margin < 0:
            raise ValueError(f"crop_margin must be >= 0 or None, got {self.crop_margin}")
        if self.max_side is not None and self.max_side < 16:
            raise ValueError(f"max_side must be >= 16 or None, got {self.max_side}")

    def segment(
        self,
        frame: np.ndarray | None,
        boxes: np.ndarray,
        embedding: torch.Tensor | None = None,
        size: tuple[int, int] | None = None,
    ) -> np.ndarray:
        frame = rgb_frame(frame, "grabcut")
        size = frame_size(frame, size)
        return _stack([self._one(frame, box) for box in check_boxes(boxes)], size)

    def _one(self, frame: np.ndarray, box: np.ndarray) -> np.ndarray:
        size = (frame.shape[0], frame.shape[1])
        filled = box_mask(box, size)
        x0, y0, x1, y1 = _pixel_window(box, size)
        if (x1 - x0) * (y1 - y0) < _MIN_SAMPLES:
            return filled
        cx0, cy0, cx1, cy1 = self._crop_window((x0, y0, x1, y1), size)
        image = frame[cy0:cy1, cx0:cx1]
        scale = 1.0
        if self.max_side is not None and max(image.shape[:2]) > self.max_side:
            scale = self.max_side / max(image.shape[:2])
            image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        rx0, ry0 = round((x0 - cx0) * scale), round((y0 - cy0) * scale)
        rx1 = min(max(round((x1 - cx0) * scale), rx0 + 1), image.shape[1])
        ry1 = min(max(round((y1 - cy0) * scale), ry0 + 1), image.shape[0])
        inside = (rx1 - rx0) * (ry1 - ry0)
        if inside < _MIN_SAMPLES or image.shape[0] * image.shape[1] - inside < _MIN_SAMPLES:
            return filled
        foreground = self._grabcut(image, (rx0, ry0, rx1 - rx0, ry1 - ry0))
        if scale != 1.0:
            foreground = cv2.resize(foreground, (cx1 - cx0, cy1 - cy0), interpolation=cv2.INTER_NEAREST)
        mask = np.zeros(size, dtype=bool)
        mask[cy0:cy1, cx0:cx1] = foreground.astype(bool)
        mask &= filled
        return mask if mask.any() else filled

    def _crop_window(self, window: tuple[int, int, int, int], size: tuple[int, int]) -> tuple[int, int, int, int]:
        """The working region (x0, y0, x1, y1) of the frame for a box's pixel window."""
        if self.crop_margin is None:
            return 0, 0, size[1], size[0]
        x0, y0, x1, y1 = window
        pad_x = max(round(self.crop_margin * (x1 - x0)), _MIN_MARGIN)
        pad_y = max(round(self.crop_margin * (y1 - y0)), _MIN_MARGIN)
        return max(x0 - pad_x, 0), max(y0 - pad_y, 0), min(x1 + pad_x, size[1]), min(y1 + pad_y, size[0])

    def _grabcut(self, image: np.ndarray, rect: tuple[int, int, int, int]) -> np.ndarray:
        """GrabCut's foreground (definite or probable) as a uint8 0/1 map; ``rect`` is (x, y, w, h)."""
        labels = np.zeros(image.shape[:2], dtype=np.uint8)
        cv2.setRNGSeed(0)
        cv2.grabCut(
            np.ascontiguousarray(image),
            labels,
            rect,
            np.zeros((1, 65), np.float64),
            np.zeros((1, 65), np.float64),
            self.iterations,
            cv2.GC_INIT_WITH_RECT,
        )
        return ((labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)).astype(np.uint8)


def _build_sam(sam: FrozenSam | None, config: ModelConfig, **options: Any) -> Segmentor:
    if sam is None:
        raise ValueError("the sam segmentor needs a FrozenSam")
    return SamSegmentor(sam, **options)


def _build_sam_hq(sam: FrozenSam | None, config: ModelConfig, **options: Any) -> SamHQSegmentor:
    from groprompt.models.sam_hq import load_sam_hq

    return load_sam_hq(config, **options)


def _build_sam2(sam: FrozenSam | None, config: ModelConfig, **options: Any) -> Sam2Segmentor:
    from groprompt.models.sam2_video import load_sam2

    return load_sam2(config, **options)


SEGMENTORS: dict[str, Callable[..., Segmentor | VideoSegmentor]] = {
    "sam": _build_sam,
    "sam-hq": _build_sam_hq,
    "sam2": _build_sam2,
    "grabcut": lambda sam=None, config=None, **options: GrabCutSegmentor(**options),
    "box": lambda sam=None, config=None, **options: BoxSegmentor(**options),
}
"""Builders by name: ``builder(sam, config, **options)``; ``sam`` uses the FrozenSam, ``sam-hq`` and ``sam2`` load the
folder ``config.segmentor_weights`` names."""


def build_segmentor(
    name: str, sam: FrozenSam | None = None, config: ModelConfig | None = None, **options: Any
) -> Segmentor | VideoSegmentor:
    """The named segmentor; ``options`` go to its constructor (``sam`` is read by ``sam`` only, ``config`` by
    ``sam-hq`` and ``sam2``)."""
    if name not in SEGMENTORS:
        raise ValueError(f"unknown segmentor {name!r}; known: {sorted(SEGMENTORS)}")
    return SEGMENTORS[name](sam, config or ModelConfig(), **options)


def check_segmentor(name: str, config: ModelConfig) -> None:
    """ConfigError, before any worker starts, unless the segmentor can turn this model's boxes into masks: its weights
    (``check_segmentor_weights``), and one box per sentence for SAM 2 (the set mode gives several)."""
    if name == "sam2" and config.multi_object:
        raise ConfigError(
            "model.multi_object: the set mode gives several boxes per sentence and frame, in no fixed order, and SAM 2's "
            "memory tracks one box per object; use --segmentor sam, sam-hq, grabcut or box"
        )
    check_segmentor_weights(name, config)


def check_segmentor_weights(name: str, config: ModelConfig) -> None:
    """ConfigError naming the folder unless a folder segmentor's ``model.segmentor_weights`` holds its model type
    (read without loading weights, so that a stage's driver refuses it before any worker starts)."""
    if name in FOLDER_MODEL_TYPES:
        from groprompt.models.pretrained import folder_model_type

        folder_model_type(config.segmentor_weights, name, FOLDER_MODEL_TYPES[name])
