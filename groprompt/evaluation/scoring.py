"""Scoring one evaluation shard, independent of Ray: per sample and expression, sums of J, F, box IoU and mask
overlap over its annotated frames (the partial rows that ``aggregate.merge_partials`` joins)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from groprompt.data.clips import referring_expressions
from groprompt.data.embeddings import read_embedding_shard
from groprompt.data.shards import ShardSample, read_shard
from groprompt.errors import DataError
from groprompt.evaluation.aggregate import SUM_COLUMNS
from groprompt.evaluation.box_sources import BoxSource, ground_truth_boxes
from groprompt.metrics import box_iou, j_and_f
from groprompt.outputs import VOID_ID, write_expression_pngs
from groprompt.segmentors import Segmentor


def paired_samples(frames: Path, embeddings: Path | None) -> Iterator[tuple[ShardSample, np.ndarray | None]]:
    """A frame shard's samples (with images), each with its embeddings (T, C, g, g) when an embedding shard is given."""
    embedded = read_embedding_shard(embeddings) if embeddings is not None else None
    for sample in read_shard(frames, with_images=True):
        if embedded is None:
            yield sample, None
            continue
        key, _, array = next(embedded, (None, None, None))
        if key != sample.key:
            raise DataError(f"{embeddings}: sample {key} does not match frame shard sample {sample.key}")
        yield sample, array


def segment_boxes(segmentor: Segmentor, sample: ShardSample, t: int, boxes: np.ndarray, embedding: np.ndarray | None) -> np.ndarray:
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
        segmented = _segment_on_frame(segmentor, sample.frame(t), unique, size)
    else:
        tensor = torch.from_numpy(np.asarray(embedding[t])).float() if embedding is not None and segmentor.needs_embedding else None
        segmented = segmentor.segment(None, unique, embedding=tensor, size=size)
    masks[finite] = segmented[inverse.reshape(-1)]
    return masks


def _segment_on_frame(segmentor: Segmentor, frame: np.ndarray, boxes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Masks (N, H, W) at ``size`` (H, W); a frame stored downscaled is segmented at its size, the masks upsampled."""
    if frame.shape[:2] == size:
        return segmentor.segment(frame, boxes)
    scale = np.array([frame.shape[1] / size[1], frame.shape[0] / size[0]] * 2)
    small = segmentor.segment(frame, boxes * scale)
    return np.stack([cv2.resize(m.astype(np.uint8), (size[1], size[0]), interpolation=cv2.INTER_NEAREST) > 0 for m in small])


def _empty_partial(meta: dict[str, Any], expression: dict[str, Any]) -> dict[str, Any]:
    """A partial row of one expression of a sample with all sums at zero."""
    return {
        "video": meta["video_id"],
        "exp_id": str(expression["exp_id"]),
        "dataset": meta.get("dataset", ""),
        "kind": expression.get("kind"),
        "obj_id": int(expression["obj_id"]),
        "text": expression["text"],
        **{name: 0.0 for name in SUM_COLUMNS},
    }


def _add_frame(row: dict[str, Any], gt: np.ndarray, void: np.ndarray, mask: np.ndarray, truth: np.ndarray, box: np.ndarray) -> None:
    """Add one annotated frame to a partial row: J, F and the overlap outside ``void``; box IoU where the object is present."""
    j, f, _ = j_and_f(gt, mask, void)
    valid = ~void
    row["j_sum"] += j
    row["f_sum"] += f
    row["n_frames"] += 1
    row["intersection"] += float(np.count_nonzero(gt & mask & valid))
    row["union"] += float(np.count_nonzero((gt | mask) & valid))
    if np.isfinite(truth).all():
        row["box_iou_sum"] += float(box_iou(box[None], truth[None])[0, 0]) if np.isfinite(box).all() else 0.0
        row["n_box_frames"] += 1


def score_sample(
    sample: ShardSample,
    expressions: list[dict[str, Any]],
    embedding: np.ndarray | None,
    box_source: BoxSource,
    segmentor: Segmentor,
    png_dir: str | Path | None,
) -> list[dict[str, Any]]:
    """Partial rows of a sample's expressions; with ``png_dir`` every frame's mask is also written as a PNG."""
    meta = sample.meta
    predicted = box_source.boxes(meta, expressions, embedding)  # (E, T, 4)
    truths = np.stack([ground_truth_boxes(meta, e["obj_id"]) for e in expressions])
    annotated = meta.get("annotated") or [True] * len(meta["frame_names"])
    rows = [_empty_partial(meta, e) for e in expressions]
    for t, name in enumerate(meta["frame_names"]):
        if not annotated[t] and png_dir is None:
            continue
        masks = segment_boxes(segmentor, sample, t, predicted[:, t], embedding)
        if png_dir is not None:
            for row, mask in zip(rows, masks):
                write_expression_pngs(png_dir, row["video"], row["exp_id"], [(name, mask)])
        if annotated[t]:
            ids = sample.mask(t)
            for row, expression, mask, truth, box in zip(rows, expressions, masks, truths[:, t], predicted[:, t]):
                _add_frame(row, ids == expression["obj_id"], ids == VOID_ID, mask, truth, box)
    return rows


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
    for sample, embedding in paired_samples(Path(frames), Path(embeddings) if need_embeddings else None):
        expressions = referring_expressions(sample.meta)
        if not expressions:
            continue
        if not sample.masks:
            raise DataError(f"{frames}: sample {sample.key} carries no masks; shard the split with --masks")
        rows += score_sample(sample, expressions, embedding, box_source, segmentor, png_dir)
    return rows
