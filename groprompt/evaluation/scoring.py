"""Scoring evaluation shards, independent of Ray: per sample and expression, sums of J, F and box IoU over its
annotated frames and the mask overlap of each frame sample (the partial rows that ``aggregate.merge_partials``
joins); optionally every frame's masks written as PNGs."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from groprompt.boxes import box_iou
from groprompt.data.embeddings import read_embedding_shard
from groprompt.data.records import target_mask
from groprompt.data.shards import ShardSample, read_shard, sample_groups
from groprompt.data.targets import referring_expressions
from groprompt.errors import DataError
from groprompt.evaluation.aggregate import SAMPLE_COLUMNS, SUM_COLUMNS
from groprompt.evaluation.box_sources import BoxSource, ground_truth_boxes
from groprompt.evaluation.metrics import j_and_f, mask_intersection_union
from groprompt.evaluation.ref_davis import write_annotator_frame
from groprompt.files import Location, location
from groprompt.mask_io import VOID_ID, write_expression_pngs
from groprompt.models.segmentors import Segmentor, SegmentorStream, VideoSegmentor, open_stream, step_sets

ShardPaths = tuple[str | Location, str | Location | None]  # a frame shard and its embedding shard (None when not needed)


@dataclass(frozen=True)
class MaskOutputs:
    """Where every frame's masks go besides scoring: per expression (``<png_dir>/<video>/<exp_id>/<frame>.png``),
    and per Ref-DAVIS17 annotator (``<annotator_dir>/anno_<k>/<video>/<frame>.png``, ``groprompt.evaluation.ref_davis``)."""

    png_dir: Location | None = None
    annotator_dir: Location | None = None

    @property
    def wanted(self) -> bool:
        return self.png_dir is not None or self.annotator_dir is not None

    def write(self, video: str, frame: str, expressions: list[dict[str, Any]], masks: np.ndarray) -> None:
        """Write one frame's masks (E, H, W) of ``expressions``."""
        if self.png_dir is not None:
            for expression, mask in zip(expressions, masks):
                write_expression_pngs(self.png_dir, video, str(expression["exp_id"]), [(frame, mask)])
        if self.annotator_dir is not None:
            referring = [i for i, e in enumerate(expressions) if e["obj_id"] is not None]
            write_annotator_frame(self.annotator_dir, video, frame, [int(expressions[i]["obj_id"]) for i in referring], masks[referring])


def paired_samples(frames: Location, embeddings: Location | None) -> Iterator[tuple[ShardSample, np.ndarray | None]]:
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


def sample_frames(sample: ShardSample) -> list[np.ndarray]:
    """The sample's RGB frames (H, W, 3) as the shard stores them."""
    return [sample.frame(t) for t in range(len(sample.meta["frame_names"]))]


class VideoStreams:
    """The segmentor's stream for each sample in turn: the samples of a video, in order, continue one stream (the memory
    of a ``VideoSegmentor`` runs through the whole video, as in inference); any other sample opens a new one."""

    def __init__(self, segmentor: Segmentor | VideoSegmentor) -> None:
        self.segmentor = segmentor
        self._stream: SegmentorStream | None = None
        self._continues_at: tuple[str, int, tuple[str, ...]] | None = None  # (video, next frame, exp ids) of the stream

    def stream(self, meta: dict[str, Any], expressions: list[dict[str, Any]]) -> SegmentorStream:
        """The stream that segments this sample's frames of ``expressions``."""
        exp_ids = tuple(str(e["exp_id"]) for e in expressions)
        if self._stream is None or self._continues_at != (meta["video_id"], int(meta["start"]), exp_ids):
            self._stream = open_stream(self.segmentor, len(expressions))
        self._continues_at = (meta["video_id"], int(meta["start"]) + len(meta["frame_names"]), exp_ids)
        return self._stream


def segment_boxes(
    segmentor: Segmentor | VideoSegmentor,
    stream: SegmentorStream,
    sample: ShardSample,
    t: int,
    boxes: np.ndarray,
    scores: np.ndarray,
    embedding: np.ndarray | None,
) -> np.ndarray:
    """Bool masks (N, H, W) at the original frame size of the stream's N objects on frame t, from K xyxy boxes each
    (N, K, 4; a NaN box: none; a per-frame segmentor gives an empty mask) and their confidences (N, K): the union of an
    object's boxes' masks (``step_sets``). A per-frame segmentor is called once for all distinct boxes (expressions of
    one object share ground-truth boxes; SAM decodes one batch)."""
    size = (int(sample.meta["height"]), int(sample.meta["width"]))
    if not stream.stateful and not np.isfinite(boxes).all(axis=-1).any():
        return np.zeros((len(boxes), *size), dtype=bool)
    if segmentor.needs_frame:
        return _segment_on_frame(stream, sample.frame(t), boxes, scores, size)
    tensor = torch.from_numpy(np.asarray(embedding[t])).float() if embedding is not None and segmentor.needs_embedding else None
    return step_sets(stream, None, boxes, scores, embedding=tensor, size=size)


def _segment_on_frame(
    stream: SegmentorStream, frame: np.ndarray, boxes: np.ndarray, scores: np.ndarray, size: tuple[int, int]
) -> np.ndarray:
    """Masks (N, H, W) at ``size`` (H, W) of boxes (N, K, 4); a frame stored downscaled is segmented at its size, the
    masks upsampled."""
    if frame.shape[:2] == size:
        return step_sets(stream, frame, boxes, scores)
    scale = np.array([frame.shape[1] / size[1], frame.shape[0] / size[0]] * 2)
    small = step_sets(stream, frame, boxes * scale, scores)
    return np.stack([cv2.resize(m.astype(np.uint8), (size[1], size[0]), interpolation=cv2.INTER_NEAREST) > 0 for m in small])


def _empty_partial(meta: dict[str, Any], expression: dict[str, Any]) -> dict[str, Any]:
    """A partial row of one expression of a sample with all sums at zero and no frame sample."""
    return {
        "video": meta["video_id"],
        "exp_id": str(expression["exp_id"]),
        "dataset": meta.get("dataset", ""),
        "kind": expression.get("kind"),
        "obj_id": int(expression["obj_id"]),
        "text": expression["text"],
        **{name: 0.0 for name in SUM_COLUMNS},
        **{name: [] for name in SAMPLE_COLUMNS},
    }


def _add_frame(row: dict[str, Any], gt: np.ndarray, void: np.ndarray, mask: np.ndarray, truth: np.ndarray, box: np.ndarray) -> None:
    """Add one annotated frame to a partial row: J and F outside ``void``; where the object is present, a frame
    sample (its mask intersection and union outside ``void``) and the box IoU."""
    j, f, _ = j_and_f(gt, mask, void)
    row["j_sum"] += j
    row["f_sum"] += f
    row["n_frames"] += 1
    if np.isfinite(truth).all():
        intersection, union = mask_intersection_union(gt, mask, void)
        row["sample_intersections"].append(intersection)
        row["sample_unions"].append(union)
        row["box_iou_sum"] += float(box_iou(torch.from_numpy(box), torch.from_numpy(truth))) if np.isfinite(box).all() else 0.0
        row["n_box_frames"] += 1


def score_sample(
    sample: ShardSample,
    expressions: list[dict[str, Any]],
    embedding: np.ndarray | None,
    box_source: BoxSource,
    segmentor: Segmentor | VideoSegmentor,
    outputs: MaskOutputs = MaskOutputs(),
    streams: VideoStreams | None = None,
) -> list[dict[str, Any]]:
    """Partial rows of the sample's expressions that name an annotated object; every expression's masks of every
    frame also go to ``outputs`` when it wants them (otherwise only annotated frames are segmented, unless the
    segmentor remembers past frames). ``streams`` continues the segmentor's stream of the video (default: a new one)."""
    meta = sample.meta
    prompts = box_source.prompts(meta, expressions, embedding, sample_frames(sample) if box_source.needs_frames else None)
    predicted = prompts.union_boxes()  # (E, T, 4): what box IoU scores
    stream = (streams or VideoStreams(segmentor)).stream(meta, expressions)
    referring = referring_expressions(meta)
    scored = [i for i, e in enumerate(expressions) if e in referring]
    if scored and not sample.masks:
        raise DataError(f"sample {sample.key} carries no masks; shard the split with --masks")
    truths = np.stack([ground_truth_boxes(meta, e["obj_id"]) for e in expressions])
    annotated = meta.get("annotated") or [True] * len(meta["frame_names"])
    rows = [_empty_partial(meta, expressions[i]) for i in scored]
    groups = sample_groups(meta)  # an expression about several objects: the union of their masks
    for t, name in enumerate(meta["frame_names"]):
        score_frame = annotated[t] and bool(scored)
        if not (score_frame or outputs.wanted or stream.stateful):
            continue
        masks = segment_boxes(segmentor, stream, sample, t, prompts.boxes[:, t], prompts.scores[:, t], embedding)
        outputs.write(meta["video_id"], name, expressions, masks)
        if score_frame:
            ids = sample.mask(t)
            for row, i in zip(rows, scored):
                _add_frame(row, target_mask(ids, expressions[i]["obj_id"], groups), ids == VOID_ID, masks[i], truths[i, t], predicted[i, t])
    return rows


def evaluate_shard(
    frames: str | Location,
    embeddings: str | Location | None,
    box_source: BoxSource,
    segmentor: Segmentor | VideoSegmentor,
    png_dir: str | Path | None = None,
    annotator_dir: str | Path | None = None,
    streams: VideoStreams | None = None,
) -> list[dict[str, Any]]:
    """Partial metric rows (one per sample and expression with a ground truth) of one evaluation shard.

    ``embeddings`` (the embedding shard of ``frames``) is needed when the box source or the segmentor needs
    them. With ``png_dir``, every frame's mask of every expression (those without a ground truth too: a
    Ref-YouTube-VOS submission) is written as ``<png_dir>/<video>/<exp_id>/<frame>.png``; with ``annotator_dir``,
    every frame's masks merged per Ref-DAVIS17 annotator (``MaskOutputs``); otherwise only annotated frames are
    segmented. ``streams`` continues the segmentor's stream of a video from a previous shard.
    """
    streams = streams or VideoStreams(segmentor)
    need_embeddings = box_source.needs_embeddings or segmentor.needs_embedding
    if need_embeddings and embeddings is None:
        raise ValueError("this box source or segmentor needs the SAM embeddings of the shard")
    outputs = MaskOutputs(
        location(png_dir) if png_dir is not None else None, location(annotator_dir) if annotator_dir is not None else None
    )
    rows = []
    for sample, embedding in paired_samples(location(frames), location(embeddings) if embeddings is not None and need_embeddings else None):
        expressions = sample.meta["expressions"] if outputs.png_dir is not None else referring_expressions(sample.meta)
        if expressions:
            try:
                rows += score_sample(sample, expressions, embedding, box_source, segmentor, outputs, streams)
            except DataError as error:
                raise DataError(f"{frames}: {error}") from error
    return rows


def evaluate_shards(
    shards: Sequence[ShardPaths],
    box_source: BoxSource,
    segmentor: Segmentor | VideoSegmentor,
    png_dir: str | Path | None = None,
    annotator_dir: str | Path | None = None,
) -> list[dict[str, Any]]:
    """``evaluate_shard`` over consecutive shards in order, with one box source and one segmentor: given the shards
    that hold whole videos (``whole_video_groups``), the model's online state and the segmentor's memory run through
    each video, as in inference."""
    streams = VideoStreams(segmentor)
    return [
        row
        for frames, embeddings in shards
        for row in evaluate_shard(frames, embeddings, box_source, segmentor, png_dir, annotator_dir, streams)
    ]


def video_of_sample(key: str) -> str:
    """The video id of a shard sample key ``<video>__<start>`` (``groprompt.data.shards.sample_key``)."""
    return key.rpartition("__")[0]


def whole_video_groups(shards: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Shard manifest rows (each with its ``samples`` keys, in order) grouped so that no video spans two groups:
    a shard whose first sample continues the previous shard's last video joins its group. (``plan_shards`` packs
    a video's windows in order, but may cut a video between two shards.)"""
    groups: list[list[dict[str, Any]]] = []
    last_video = None
    for shard in shards:
        videos = [video_of_sample(key) for key in shard["samples"]]
        if groups and videos and videos[0] == last_video:
            groups[-1].append(shard)
        else:
            groups.append([shard])
        last_video = videos[-1] if videos else last_video
    return groups
