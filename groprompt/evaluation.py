"""Evaluation of referring segmentation: box source -> top box per frame -> segmentor -> J, F, box IoU.

One evaluation shard (frames with ground-truth masks, optionally its embedding shard) is scored by
``evaluate_shard``, independent of Ray. It yields one *partial* row per (sample, expression): sums over the
sample's annotated frames. A video longer than the shard window is split over samples (even shards), so the
driver merges partials into one row per expression with ``merge_partials`` and summarises with ``summarize``.

Box sources:
- ``oracle``: the ground-truth box of each frame (the paper's "GT box + SAM" upper bound); no box where the
  object is absent, which gives an empty mask;
- ``model``: the top-confidence box of the trained proposal generator, online over the sample's frames.

Per expression (over its annotated frames; a frame where the object is absent has an empty ground truth):
J, F and J&F as DAVIS computes them (void pixels, id 255, ignored), box IoU over the frames where the object is
present, and the summed mask intersection and union (A2D/JHMDB-Sentences' P@K, overall and mean IoU).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
import pandas as pd
import torch

from groprompt.config import ModelConfig
from groprompt.data.clips import referring_expressions
from groprompt.data.embeddings import read_embedding_shard
from groprompt.data.records import DataError
from groprompt.data.shards import ShardSample, read_shard
from groprompt.metrics import box_iou, iou_summary, j_and_f
from groprompt.outputs import read_index_png, write_expression_pngs
from groprompt.segmentors import Segmentor

BOX_SOURCES = ("model", "oracle")
IOU_DATASETS = ("a2d-sentences", "jhmdb-sentences")  # summaries add P@K, overall and mean IoU
VOID_ID = 255
_SUM_COLUMNS = ("j_sum", "f_sum", "n_frames", "box_iou_sum", "n_box_frames", "intersection", "union")
_KEY_COLUMNS = ("video", "exp_id")
_INFO_COLUMNS = ("dataset", "kind", "obj_id", "text")


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

    def __init__(self, model: torch.nn.Module, frozen: Any, chunk: int = 8) -> None:
        self.model, self.frozen, self.chunk = model.eval(), frozen, chunk

    @classmethod
    def load(cls, model_config: ModelConfig, state_dict: dict[str, Any], frozen: Any = None) -> ModelBoxes:
        """Build the frozen encoders (unless given) and the model, and load the trained weights."""
        from groprompt.models.groprompt import build_frozen, build_model

        frozen = frozen or build_frozen(model_config)
        model = build_model(model_config, frozen)
        model.load_state_dict(state_dict)
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
            predicted, _ = predict_boxes(self.model, self.frozen, clip.expand(len(texts), *clip.shape[1:]), texts)
            xyxy = cxcywh_to_xyxy(predicted.double()).numpy() * np.array([width, height, width, height])
            out.append(np.clip(xyxy, 0, [width, height, width, height]))
        return np.concatenate(out)


def load_state_dict(checkpoint: str | Path) -> dict[str, Any]:
    """Trained weights from a checkpoint folder (``checkpoint.pt``), a checkpoint file, or a bare state-dict file."""
    path = Path(checkpoint)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    return payload["model"] if isinstance(payload, dict) and "model" in payload else payload


def _samples(frames: Path, embeddings: Path | None, with_images: bool) -> Iterator[tuple[ShardSample, np.ndarray | None]]:
    """A frame shard's samples, each with its embeddings (T, C, g, g) when an embedding shard is given."""
    embedded = read_embedding_shard(embeddings) if embeddings is not None else None
    for sample in read_shard(frames, with_images=with_images):
        if embedded is None:
            yield sample, None
            continue
        key, _, array = next(embedded, (None, None, None))
        if key != sample.key:
            raise DataError(f"{embeddings}: sample {key} does not match frame shard sample {sample.key}")
        yield sample, array


def _segment(
    segmentor: Segmentor, sample: ShardSample, t: int, boxes: np.ndarray, embedding: np.ndarray | None
) -> np.ndarray:
    """Bool masks (N, H, W) at the original frame size of xyxy boxes (N, 4) on frame t; a NaN box gives an empty mask.

    Each distinct box is segmented once (expressions of one object share ground-truth boxes), and all of
    them go to the segmentor in one call (SAM decodes them as one batch).
    """
    size = (int(sample.meta["height"]), int(sample.meta["width"]))
    masks = np.zeros((len(boxes), *size), dtype=bool)
    finite = np.isfinite(boxes).all(axis=1)
    if not finite.any():
        return masks
    unique, inverse = np.unique(boxes[finite], axis=0, return_inverse=True)
    if segmentor.needs_frame:
        frame = sample.frame(t)
        if frame.shape[:2] != size:  # stored downscaled: segment at the stored size, upsample the masks
            scale = np.array([frame.shape[1] / size[1], frame.shape[0] / size[0]] * 2)
            small = segmentor.segment(frame, unique * scale)
            segmented = np.stack([cv2.resize(m.astype(np.uint8), (size[1], size[0]), interpolation=cv2.INTER_NEAREST) > 0 for m in small])
        else:
            segmented = segmentor.segment(frame, unique)
    else:
        tensor = torch.from_numpy(np.asarray(embedding[t])).float() if embedding is not None and segmentor.needs_embedding else None
        segmented = segmentor.segment(None, unique, embedding=tensor, size=size)
    masks[finite] = segmented[inverse.reshape(-1)]
    return masks


def evaluate_shard(
    frames: str | Path,
    embeddings: str | Path | None,
    box_source: BoxSource,
    segmentor: Segmentor,
    png_dir: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Partial metric rows (one per sample and expression) of one evaluation shard.

    ``embeddings`` (the embedding shard of ``frames``) is needed when the box source or the segmentor needs
    them. With ``png_dir``, every frame's mask is written as ``<png_dir>/<video>/<exp_id>/<frame>.png``;
    otherwise only annotated frames are segmented.
    """
    need_embeddings = box_source.needs_embeddings or segmentor.needs_embedding
    if need_embeddings and embeddings is None:
        raise ValueError("this box source or segmentor needs the SAM embeddings of the shard")
    rows = []
    for sample, array in _samples(Path(frames), Path(embeddings) if need_embeddings else None, with_images=True):
        meta = sample.meta
        expressions = referring_expressions(meta)
        if not expressions:
            continue
        if not sample.masks:
            raise DataError(f"{frames}: sample {sample.key} carries no masks; shard the split with --masks")
        predicted = box_source.boxes(meta, expressions, array)  # (E, T, 4)
        truths = [ground_truth_boxes(meta, e["obj_id"]) for e in expressions]
        annotated = meta.get("annotated") or [True] * len(meta["frame_names"])
        sample_rows = [
            {
                "video": meta["video_id"],
                "exp_id": str(e["exp_id"]),
                "dataset": meta.get("dataset", ""),
                "kind": e.get("kind"),
                "obj_id": int(e["obj_id"]),
                "text": e["text"],
                **{name: 0.0 for name in _SUM_COLUMNS},
            }
            for e in expressions
        ]
        for t, name in enumerate(meta["frame_names"]):
            if not annotated[t] and png_dir is None:
                continue
            masks = _segment(segmentor, sample, t, predicted[:, t], array)
            gt_map = sample.mask(t) if annotated[t] else None
            for index, (row, expression, mask) in enumerate(zip(sample_rows, expressions, masks)):
                if png_dir is not None:
                    write_expression_pngs(png_dir, row["video"], row["exp_id"], [(name, mask)])
                if gt_map is None:
                    continue
                gt, void = gt_map == expression["obj_id"], gt_map == VOID_ID
                j, f, _ = j_and_f(gt, mask, void)
                valid = ~void
                row["j_sum"] += j
                row["f_sum"] += f
                row["n_frames"] += 1
                row["intersection"] += float(np.count_nonzero(gt & mask & valid))
                row["union"] += float(np.count_nonzero((gt | mask) & valid))
                truth, box = truths[index][t], predicted[index, t]
                if np.isfinite(truth).all():
                    row["box_iou_sum"] += float(box_iou(box[None], truth[None])[0, 0]) if np.isfinite(box).all() else 0.0
                    row["n_box_frames"] += 1
        rows += sample_rows
    return rows


def merge_partials(partials: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One row per expression (video, exp_id): J, F, JF (means over its annotated frames), box_iou (over the
    frames where the object is present), n_frames, n_box_frames, intersection, union; NaN where no frame counts."""
    columns = [*_KEY_COLUMNS, *_INFO_COLUMNS, "J", "F", "JF", "box_iou", "n_frames", "n_box_frames", "intersection", "union"]
    if not partials:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame(list(partials))
    frame["kind"] = frame["kind"].astype(object).where(frame["kind"].notna(), None)
    grouped = frame.groupby(list(_KEY_COLUMNS), sort=True, dropna=False)
    table = grouped[list(_SUM_COLUMNS)].sum().join(grouped[list(_INFO_COLUMNS)].first()).reset_index()
    frames, box_frames = table["n_frames"], table["n_box_frames"]
    table["J"] = (table["j_sum"] / frames).where(frames > 0)
    table["F"] = (table["f_sum"] / frames).where(frames > 0)
    table["JF"] = (table["J"] + table["F"]) / 2
    table["box_iou"] = (table["box_iou_sum"] / box_frames).where(box_frames > 0)
    table["n_frames"] = frames.astype(int)
    table["n_box_frames"] = box_frames.astype(int)
    table["obj_id"] = table["obj_id"].astype(int)
    table["kind"] = [k if isinstance(k, str) else None for k in table["kind"]]
    return table[columns]


def _means(table: pd.DataFrame) -> dict[str, Any]:
    scored = table[table["n_frames"] > 0]
    return {
        "n_expressions": int(len(scored)),
        "n_frames": int(scored["n_frames"].sum()),
        "J": float(scored["J"].mean()) if len(scored) else math.nan,
        "F": float(scored["F"].mean()) if len(scored) else math.nan,
        "JF": float(scored["JF"].mean()) if len(scored) else math.nan,
        "box_iou": float(table["box_iou"].dropna().mean()) if table["box_iou"].notna().any() else math.nan,
    }


def summarize(table: pd.DataFrame) -> dict[str, Any]:
    """Means over expressions (with at least one annotated frame) of J, F, J&F and box IoU.

    Adds ``P@K``, ``overall_iou``, ``mean_iou`` for A2D/JHMDB-Sentences, and ``by_kind`` (the same means per
    expression type) when expressions carry a type (RefShapes).
    """
    summary = _means(table)
    datasets = sorted({d for d in table["dataset"] if d}) if len(table) else []
    summary["dataset"] = ",".join(datasets)
    scored = table[table["n_frames"] > 0]
    if len(scored) and any(d in IOU_DATASETS for d in datasets):
        summary.update(iou_summary(scored["intersection"].to_numpy(), scored["union"].to_numpy()))
    kinds = sorted({k for k in table["kind"] if isinstance(k, str) and k}) if len(table) else []
    if kinds:
        summary["by_kind"] = {kind: _means(table[table["kind"] == kind]) for kind in kinds}
    return summary


def flat_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """Numeric summary values as MLflow metric names (``P@0.5`` -> ``P_at_0.5``, ``by_kind/motion/JF``); NaN left out."""

    def name(key: str) -> str:
        return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in key.replace("@", "_at_"))

    metrics = {}
    for key, value in summary.items():
        if key == "by_kind":
            for kind, values in value.items():
                metrics.update({f"by_kind/{name(kind)}/{k}": float(v) for k, v in values.items() if isinstance(v, (int, float))})
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics[name(key)] = float(value)
    return {k: v for k, v in metrics.items() if math.isfinite(v)}


def submission_masks(png_dir: str | Path) -> Iterator[tuple[str, str, str, np.ndarray]]:
    """(video, exp_id, frame, mask) of every ``<png_dir>/<video>/<exp_id>/<frame>.png``, sorted by name."""
    for path in sorted(Path(png_dir).glob("*/*/*.png")):
        yield path.parent.parent.name, path.parent.name, path.stem, read_index_png(path) > 0
