"""One video with all its queries: predict frame by frame and stream the masks table, PNGs and overlays to disk."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

import groprompt
from groprompt.boxes import union_box
from groprompt.config import ModelConfig
from groprompt.data.pixels import frame_pixels
from groprompt.errors import ConfigError, DataError
from groprompt.files import Location, atomic_path, fingerprint, location, open_random
from groprompt.inference.predictor import Predictor
from groprompt.inference.queries import InputError, Query
from groprompt.inference.sources import VideoSource, iter_frames, video_fps
from groprompt.mask_io import mask_to_rle, write_expression_pngs
from groprompt.models.prompts import frame_prompts
from groprompt.models.segmentors import open_stream, step_sets
from groprompt.viz.drawing import default_colors, overlay
from groprompt.viz.overlay_videos import OVERLAY_FORMATS, OverlayWriter

METADATA_KEY = b"groprompt_infer"
ROW_GROUP_FRAMES = 64  # frames per parquet row group: bounds the rows held before they are written
PROGRESS_FRAMES = 100  # log a line every this many frames

RESULT_SCHEMA = pa.schema(
    [
        ("video", pa.string()),
        ("exp_id", pa.string()),
        ("query", pa.string()),
        ("frame_index", pa.int32()),
        ("frame", pa.string()),
        ("box", pa.list_(pa.float32(), 4)),  # xyxy frame pixels, exclusive right/bottom edge: the box around ``boxes``
        ("score", pa.float32()),  # the highest confidence in [0, 1] of ``boxes`` (``FrameOutput.top_scores``; NaN: none)
        ("boxes", pa.list_(pa.list_(pa.float32(), 4))),  # every prompt box: the top one, or in the set mode 0, 1 or more
        ("scores", pa.list_(pa.float32())),  # their confidences
        ("rle", pa.struct([("size", pa.list_(pa.int32())), ("counts", pa.string())])),  # COCO RLE
    ]
)

Log = Callable[[str], Any]


@dataclass(frozen=True)
class OutputOptions:
    """What to write besides the parquet table, and how to stream."""

    png: bool = False
    overlay: str | None = None  # gif | mp4 | None
    encode_batch: int = 4  # frames per SAM encoder pass
    overlay_fps: float | None = None  # None = the container's rate (10 for frame folders)

    def __post_init__(self) -> None:
        if self.overlay not in (None, *OVERLAY_FORMATS):
            raise ConfigError(f"overlay must be one of {OVERLAY_FORMATS} or None, got {self.overlay!r}")
        if self.encode_batch < 1:
            raise ConfigError(f"encode_batch must be at least 1, got {self.encode_batch}")


@dataclass
class VideoResult:
    """What happened to one video: ``status`` is done, skipped (verified earlier output) or failed."""

    video: str
    path: str
    status: str
    n_queries: int
    n_frames: int = 0
    rows: int = 0
    parquet: str = ""
    overlays: list[str] = field(default_factory=list)
    seconds: float = 0.0
    errors: list[InputError] = field(default_factory=list)

    def to_row(self) -> dict[str, Any]:
        """The manifest row: every field but the errors (they go to the errors table)."""
        row = asdict(self)
        row.pop("errors")
        return row


@dataclass(frozen=True)
class FramePrediction:
    """All queries' predictions on one frame."""

    index: int
    name: str
    frame: np.ndarray  # HxWx3 uint8 RGB
    boxes: np.ndarray  # (Q, K, 4) xyxy pixels, K prompt boxes per query (NaN: none; K = 1 but in the set mode)
    scores: np.ndarray  # (Q, K)
    masks: np.ndarray  # (Q, H, W) bool, the union of each query's boxes' masks


def masks_path(out_dir: str | Path | Location, video: str) -> Location:
    """The video's parquet table of boxes and masks."""
    return location(out_dir) / "masks" / f"{video}.parquet"


def overlay_path(out_dir: str | Path | Location, video: str, exp_id: str, fmt: str) -> Location:
    """The overlay video of one query."""
    return location(out_dir) / "overlays" / video / f"{exp_id}.{fmt}"


def output_fingerprint(
    source: VideoSource, queries: Sequence[Query], model_id: str, segmentor: str, model_config: ModelConfig, options: OutputOptions
) -> str:
    """What a video's outputs depend on: the video file, its queries, the weights, segmentor and options."""
    return fingerprint(
        {
            "video": f"{source.path}:{source.member}" if source.member else source.path,
            "queries": [(q.exp_id, q.query) for q in queries],
            "model": model_id,
            "model_config": asdict(model_config),
            "segmentor": segmentor,
            "png": options.png,
            "overlay": options.overlay,
        }
    )


def verified_rows(path: Location, expected_fingerprint: str) -> int | None:
    """The row count of a finished video's parquet file when it reads back with ``expected_fingerprint``."""
    if not path.is_file():
        return None
    try:
        with open_random(path) as handle:
            meta = pq.read_metadata(handle)
    except (pa.ArrowInvalid, OSError):
        return None
    raw = (meta.metadata or {}).get(METADATA_KEY)
    if raw is None:
        return None
    info = json.loads(raw)
    if info.get("fingerprint") != expected_fingerprint or info.get("rows") != meta.num_rows:
        return None
    return int(meta.num_rows)


def _batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def predict_video(
    predictor: Predictor, frames: Iterable[tuple[str, np.ndarray]], sentences: Sequence[str], encode_batch: int = 4
) -> Iterator[FramePrediction]:
    """Stream every frame's predictions for all queries at once.

    Online: frame t is predicted from frames <= t; the proposal generator's batch is the queries, and the segmentor
    turns their boxes into masks through one stream over the video (``groprompt.models.segmentors.open_stream``).
    """
    with torch.inference_mode():
        online = predictor.model.proposal.stream(predictor.frozen, list(sentences))
        segmenting = open_stream(predictor.segmentor, len(sentences))
        pixel_size = predictor.model.proposal.pixel_size
        index = 0
        for batch in _batched(frames, encode_batch):
            embeddings = predictor.frozen.sam.encode([frame for _, frame in batch])
            for (name, frame), embedding in zip(batch, embeddings):
                height, width = frame.shape[:2]
                output = online.step(embedding, frame_pixels(frame, pixel_size))
                boxes, scores = frame_prompts(output, predictor.model.set_threshold, height, width)
                masks = step_sets(segmenting, frame, boxes, scores, embedding=embedding, size=(height, width))
                yield FramePrediction(index, name, frame, boxes, scores, np.asarray(masks, dtype=bool))
                index += 1


def infer_video(
    predictor: Predictor,
    source: VideoSource,
    queries: Sequence[Query],
    out_dir: str | Path,
    model_config: ModelConfig,
    options: OutputOptions = OutputOptions(),
    log: Log = print,
) -> VideoResult:
    """Segment every query of one video into ``out_dir`` (layout in ``groprompt.inference``); never raises for
    a bad video: an unreadable one comes back ``failed`` with one error per query. A video whose parquet file
    already verifies is ``skipped``."""
    started = time.perf_counter()
    out = masks_path(out_dir, source.name)
    result = VideoResult(source.name, source.path, "done", len(queries), parquet=str(out))
    expected = output_fingerprint(source, queries, predictor.model_id, predictor.segmentor_name, model_config, options)
    existing = verified_rows(out, expected)
    if existing is not None:
        result.status, result.rows, result.n_frames = "skipped", existing, existing // max(1, len(queries))
        if options.overlay:
            result.overlays = [str(overlay_path(out_dir, source.name, q.exp_id, options.overlay)) for q in queries]
        return result

    writers: list[OverlayWriter] = []
    try:
        with atomic_path(out) as temporary:
            if options.overlay:
                fps = options.overlay_fps or video_fps(source)
                for q in queries:
                    writers.append(OverlayWriter(overlay_path(out_dir, source.name, q.exp_id, options.overlay), fps))
            _write_outputs(predictor, source, queries, out_dir, options, temporary, expected, writers, result, log)
            for writer in writers:
                writer.close()
        result.overlays = [str(writer.path) for writer in writers]
    except Exception as error:  # noqa: BLE001 - one bad video must not stop the others; the reason is recorded
        for writer in writers:
            writer.abort()
        reason = str(error) if isinstance(error, DataError) else f"{type(error).__name__}: {error}"
        result.status, result.rows, result.overlays = "failed", 0, []
        result.errors = [InputError(source.name, q.query, reason) for q in queries]
        log(f"{source.name}: failed: {reason}")
    result.seconds = time.perf_counter() - started
    if result.status == "done":
        log(f"{source.name}: {result.n_frames} frames x {len(queries)} queries in {result.seconds:.1f} s")
    return result


def _write_outputs(
    predictor: Predictor,
    source: VideoSource,
    queries: Sequence[Query],
    out_dir: str | Path,
    options: OutputOptions,
    table_path: Path,
    expected_fingerprint: str,
    writers: Sequence[OverlayWriter],
    result: VideoResult,
    log: Log,
) -> None:
    """Predict the video and write its parquet table to ``table_path`` (with the fingerprint in its metadata),
    PNGs and overlay frames as the frames go by, counting frames and rows in ``result``."""
    with pq.ParquetWriter(table_path, RESULT_SCHEMA) as table:
        rows: list[dict[str, Any]] = []
        for prediction in predict_video(predictor, iter_frames(source), [q.query for q in queries], options.encode_batch):
            rows += _mask_rows(source.name, queries, prediction)
            if options.png:
                for q, mask in zip(queries, prediction.masks):
                    write_expression_pngs(location(out_dir) / "png", source.name, q.exp_id, [(prediction.name, mask)])
            for writer, boxes, mask in zip(writers, prediction.boxes, prediction.masks):
                writer.put(overlay(prediction.frame, mask[None], boxes, colors=default_colors(1) * len(boxes)))
            result.n_frames = prediction.index + 1
            if len(rows) >= ROW_GROUP_FRAMES * len(queries):
                table.write_table(pa.Table.from_pylist(rows, schema=RESULT_SCHEMA))
                result.rows += len(rows)
                rows = []
            if result.n_frames % PROGRESS_FRAMES == 0:
                log(f"{source.name}: {result.n_frames} frames")
        if rows:
            table.write_table(pa.Table.from_pylist(rows, schema=RESULT_SCHEMA))
            result.rows += len(rows)
        if result.n_frames == 0:
            raise DataError(f"{source.path}: no frames")
        metadata = {"fingerprint": expected_fingerprint, "rows": result.rows, "version": groprompt.__version__}
        table.add_key_value_metadata({METADATA_KEY: json.dumps(metadata)})


def _mask_rows(video: str, queries: Sequence[Query], prediction: FramePrediction) -> list[dict[str, Any]]:
    """One parquet row per query on this frame: its prompt boxes (none, one, or in the set mode several), the box
    around them and their highest confidence (NaN when there are none), and its mask."""
    rows = []
    for q, boxes, scores, mask in zip(queries, prediction.boxes, prediction.scores, prediction.masks):
        kept = np.isfinite(boxes).all(axis=-1)
        around = union_box(torch.from_numpy(boxes)).numpy()
        rows.append(
            {
                "video": video,
                "exp_id": q.exp_id,
                "query": q.query,
                "frame_index": prediction.index,
                "frame": prediction.name,
                "box": [float(v) for v in around],
                "score": float(scores[kept].max()) if kept.any() else float("nan"),
                "boxes": [[float(v) for v in box] for box in boxes[kept]],
                "scores": [float(v) for v in scores[kept]],
                "rle": mask_to_rle(mask),
            }
        )
    return rows
