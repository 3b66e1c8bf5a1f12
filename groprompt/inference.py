"""Referring segmentation of whole videos, streamed frame by frame (the library behind ``pipelines/infer.py``).

One video with all its referring queries at once: frames are decoded as a stream (PyAV for MP4 and other
containers, Pillow for frame folders), encoded by the frozen SAM a few at a time, passed through the proposal
generator online (the batch is the video's queries, the state carries frame t to t + 1), and each query's
top-confidence box becomes a mask with the chosen segmentor. Nothing holds more than ``encode_batch`` frames,
so memory does not grow with the length of the video.

Outputs of one video, under an output folder::

    masks/<video>.parquet                 one row per (query, frame): box xyxy px, score, COCO RLE mask
    png/<video>/<exp_id>/<frame>.png      optional DAVIS palette PNGs (id 1 on the object)
    overlays/<video>/<exp_id>.gif|.mp4    optional overlay video of the mask and box

The parquet file is written to a temporary name and renamed last, so its presence means the video is done;
its schema metadata holds a fingerprint of the queries, the model and the output options, and a re-run skips
a video whose parquet file reads back with the same fingerprint.
"""

from __future__ import annotations

import csv
import json
import os
import queue
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

import groprompt
from groprompt.boxes import cxcywh_to_xyxy
from groprompt.config import ModelConfig
from groprompt.data.manifest import fingerprint, temporary_path
from groprompt.data.records import DataError
from groprompt.outputs import mask_to_rle, write_expression_pngs
from groprompt.viz import overlay, write_video

CONTAINER_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".gif", ".mpg", ".mpeg", ".ts", ".wmv", ".flv"})
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
OVERLAY_FORMATS = ("gif", "mp4")
METADATA_KEY = b"groprompt_infer"
ROW_GROUP_FRAMES = 64  # frames per parquet row group: bounds the rows held before they are written

RESULT_SCHEMA = pa.schema(
    [
        ("video", pa.string()),
        ("exp_id", pa.string()),
        ("query", pa.string()),
        ("frame_index", pa.int32()),
        ("frame", pa.string()),
        ("box", pa.list_(pa.float32(), 4)),  # xyxy frame pixels, exclusive right/bottom edge
        ("score", pa.float32()),  # softmax confidence of the top query over the proposals
        ("rle", pa.struct([("size", pa.list_(pa.int32())), ("counts", pa.string())])),  # COCO RLE
    ]
)
ERROR_SCHEMA = pa.schema([("video", pa.string()), ("query", pa.string()), ("reason", pa.string())])


# ---------------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class VideoSource:
    """One input video: a container file (``kind="container"``) or a folder of frames (``kind="folder"``)."""

    name: str
    path: str
    kind: str


@dataclass(frozen=True)
class Query:
    """One referring sentence for a video; ``exp_id`` names its outputs (its order among the video's queries)."""

    video: str
    query: str
    exp_id: str = ""


@dataclass(frozen=True)
class InputError:
    """A row of the errors table."""

    video: str
    query: str
    reason: str


def _is_frame_folder(path: Path) -> bool:
    return path.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir() if p.is_file())


def video_source(path: str | Path) -> VideoSource:
    """The video at ``path``: a container file (any suffix PyAV may read) or a folder holding images."""
    path = Path(path)
    if path.is_dir():
        return VideoSource(path.name, str(path.resolve()), "folder")
    return VideoSource(path.stem, str(path.resolve()), "container")


def discover_videos(videos: str | Path | Sequence[str | Path]) -> list[VideoSource]:
    """The videos named by ``videos``: a folder of video files and/or frame folders, a folder of frames (one
    video), a ``.txt`` list of paths (one a line, relative to the list), or a sequence of such paths.

    Paths that do not exist are kept (as containers): reading them fails later and is recorded per video.
    Two videos with the same name are an error.
    """
    if isinstance(videos, (str, Path)):
        root = Path(videos)
        if root.is_file() and root.suffix.lower() == ".txt":
            lines = [line.strip() for line in root.read_text().splitlines()]
            paths: list[Path] = [root.parent / line for line in lines if line and not line.startswith("#")]
        elif root.is_dir() and not _is_frame_folder(root):
            paths = sorted(
                p for p in root.iterdir()
                if not p.name.startswith(".") and ((p.is_file() and p.suffix.lower() in CONTAINER_SUFFIXES) or _is_frame_folder(p))
            )
        else:
            paths = [root]
    else:
        paths = [Path(p) for p in videos]
    sources = [video_source(p) for p in paths]
    names = [s.name for s in sources]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DataError(f"several videos share the names {duplicates}; rename them or list them separately")
    return sources


def iter_frames(source: VideoSource | str | Path) -> Iterator[tuple[str, np.ndarray]]:
    """Yield (frame name, HxWx3 uint8 RGB frame) one at a time; names are ``00000``... for containers and the
    file stems for frame folders (sorted). Raises ``DataError`` naming the file when it cannot be read."""
    if not isinstance(source, VideoSource):
        source = video_source(source)
    path = Path(source.path)
    if source.kind == "folder":
        yield from _iter_folder(path)
    else:
        yield from _iter_container(path)


def _iter_container(path: Path) -> Iterator[tuple[str, np.ndarray]]:
    import av

    if not path.is_file():
        raise DataError(f"{path}: video file not found")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as error:
        raise DataError(f"{path}: not a readable video ({error})") from error
    with container:
        if not container.streams.video:
            raise DataError(f"{path}: no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        index = 0
        try:
            for frame in container.decode(stream):
                yield f"{index:05d}", frame.to_ndarray(format="rgb24")
                index += 1
        except (av.error.FFmpegError, OSError, ValueError) as error:
            raise DataError(f"{path}: decoding failed after {index} frames ({error})") from error


def _iter_folder(path: Path) -> Iterator[tuple[str, np.ndarray]]:
    from PIL import Image, UnidentifiedImageError

    if not path.is_dir():
        raise DataError(f"{path}: frame folder not found")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    for file in files:
        try:
            with Image.open(file) as image:
                frame = np.asarray(image.convert("RGB"))
        except (UnidentifiedImageError, OSError) as error:
            raise DataError(f"{file}: unreadable frame ({error})") from error
        yield file.stem, frame


def video_fps(source: VideoSource, default: float = 10.0) -> float:
    """The container's average frame rate, else ``default`` (frame folders, unknown rates)."""
    if source.kind != "container":
        return default
    import av

    try:
        with av.open(source.path) as container:
            rate = container.streams.video[0].average_rate
            return float(rate) if rate else default
    except Exception:  # noqa: BLE001 - unreadable videos fail later, with their reason recorded
        return default


def read_queries(path: str | Path) -> tuple[list[Query], list[InputError]]:
    """Queries from a CSV file (header ``video,query``) or JSONL (``{"video": ..., "query": ...}`` a line).

    Rows with an empty query (or no video) go to the errors; a file without the columns is a ``DataError``.
    ``exp_id`` is the query's order among its video's queries (``0``, ``1``...), unless the file gives one.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: queries file not found")
    records: list[tuple[int, dict[str, Any]]] = []
    errors: list[InputError] = []
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                errors.append(InputError("", line.strip()[:200], f"{path.name} line {number}: not JSON ({error.msg})"))
                continue
            if not isinstance(record, dict):
                errors.append(InputError("", line.strip()[:200], f"{path.name} line {number}: expected an object"))
                continue
            records.append((number, record))
    else:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            fields = [f.strip() for f in reader.fieldnames or []]
            if "video" not in fields or "query" not in fields:
                raise DataError(f"{path}: expected a CSV header with columns video,query; found {fields}")
            for number, row in enumerate(reader, start=2):
                records.append((number, {(k or "").strip(): v for k, v in row.items()}))
    queries: list[Query] = []
    counts: dict[str, int] = {}
    for number, record in records:
        video = str(record.get("video") or "").strip()
        text = record.get("query")
        text = "" if text is None else str(text).strip()
        if not video:
            errors.append(InputError("", text, f"{path.name} line {number}: no video named"))
            continue
        if not text:
            errors.append(InputError(video, "", f"{path.name} line {number}: empty query"))
            continue
        exp_id = str(record.get("exp_id") or counts.get(video, 0))
        counts[video] = counts.get(video, 0) + 1
        queries.append(Query(video, text, exp_id))
    return queries, errors


def group_queries(queries: Iterable[Query], videos: Sequence[VideoSource]) -> tuple[list[tuple[VideoSource, list[Query]]], list[InputError]]:
    """Each video (in ``videos`` order) with its queries; queries naming no known video become errors.
    Videos without queries are left out."""
    by_name = {v.name: v for v in videos}
    grouped: dict[str, list[Query]] = {}
    errors: list[InputError] = []
    for q in queries:
        if q.video not in by_name:
            errors.append(InputError(q.video, q.query, "video not found among the inputs"))
        else:
            grouped.setdefault(q.video, []).append(q)
    return [(v, grouped[v.name]) for v in videos if v.name in grouped], errors


# ---------------------------------------------------------------------------------------------- model


@dataclass
class Predictor:
    """Everything one worker needs: frozen SAM and text encoder, the trained model, a segmentor."""

    frozen: Any  # groprompt.models.groprompt.FrozenEncoders
    model: Any  # groprompt.models.groprompt.GroPrompt
    segmentor: Any  # groprompt.segmentors.Segmentor
    segmentor_name: str
    model_id: str  # names the weights in fingerprints: checkpoint sha256, mlflow:<run>, random:<seed>


def load_model_state(source: str | Path) -> tuple[dict[str, torch.Tensor], ModelConfig | None, str]:
    """The trained state dict named by ``source``, the model configuration that goes with it (MLflow only),
    and an id for fingerprints.

    ``source`` is ``mlflow:<run_id>`` (``log_trained_model``'s artifacts; the tracking URI from
    $MLFLOW_TRACKING_URI or the local default), a checkpoint folder (``checkpoint.pt`` inside), or a file
    holding a training payload (``{"model": ...}``) or a bare state dict.
    """
    from groprompt.data.manifest import sha256_file
    from groprompt.training import CHECKPOINT_FILE

    text = str(source)
    if text.startswith("mlflow:"):
        from groprompt.tracking import load_logged_model

        run_id = text.removeprefix("mlflow:")
        state, config = load_logged_model(run_id)
        return state, config.model, text
    path = Path(source)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    state = payload["model"] if isinstance(payload, dict) and "model" in payload else payload
    if not isinstance(state, dict):
        raise DataError(f"{path}: expected a state dict or a payload with 'model'")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    return state, None, sha256_file(path)


def build_predictor(
    model_config: ModelConfig, state: dict[str, torch.Tensor] | None = None, segmentor: str = "sam", seed: int = 0, model_id: str | None = None
) -> Predictor:
    """Load the frozen encoders and the model; ``state=None`` gives an UNTRAINED random model (smoke tests)."""
    from groprompt.models.groprompt import build_frozen, build_model
    from groprompt.segmentors import build_segmentor

    frozen = build_frozen(model_config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(model_config, frozen)
    if state is not None:
        model.load_state_dict(state, strict=True)
    model.eval().requires_grad_(False)
    return Predictor(
        frozen=frozen,
        model=model,
        segmentor=build_segmentor(segmentor, sam=frozen.sam),
        segmentor_name=segmentor,
        model_id=model_id or (f"random:{seed}" if state is None else fingerprint({k: list(v.shape) for k, v in state.items()})),
    )


# ---------------------------------------------------------------------------------------------- one video


@dataclass(frozen=True)
class OutputOptions:
    """What to write besides the parquet table, and how to stream."""

    png: bool = False
    overlay: str | None = None  # gif | mp4 | None
    encode_batch: int = 4  # frames per SAM encoder pass
    overlay_fps: float | None = None  # None = the container's rate (10 for frame folders)

    def __post_init__(self) -> None:
        if self.overlay not in (None, *OVERLAY_FORMATS):
            raise ValueError(f"overlay must be one of {OVERLAY_FORMATS} or None, got {self.overlay!r}")
        if self.encode_batch < 1:
            raise ValueError("encode_batch must be at least 1")


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
        row = asdict(self)
        row.pop("errors")
        return row


def masks_path(out_dir: str | Path, video: str) -> Path:
    return Path(out_dir) / "masks" / f"{video}.parquet"


def overlay_path(out_dir: str | Path, video: str, exp_id: str, fmt: str) -> Path:
    return Path(out_dir) / "overlays" / video / f"{exp_id}.{fmt}"


def output_fingerprint(source: VideoSource, queries: Sequence[Query], model_id: str, segmentor: str, model_config: ModelConfig, options: OutputOptions) -> str:
    """What a video's outputs depend on: the video file, its queries, the weights, segmentor and options."""
    return fingerprint(
        {
            "video": source.path,
            "queries": [(q.exp_id, q.query) for q in queries],
            "model": model_id,
            "model_config": asdict(model_config),
            "segmentor": segmentor,
            "png": options.png,
            "overlay": options.overlay,
        }
    )


def verified_rows(path: Path, expected_fingerprint: str) -> int | None:
    """The row count of a finished video's parquet file when it reads back with ``expected_fingerprint``."""
    if not path.is_file():
        return None
    try:
        meta = pq.read_metadata(path)
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


class _Abort:
    """Tells a streaming overlay writer to discard its partial file."""


class _OverlaySink:
    """``viz.write_video`` in a thread, fed frame by frame through a small queue (several run at once)."""

    def __init__(self, path: Path, fps: float) -> None:
        self.path = path
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=4)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(max(1, round(fps)),), daemon=True)
        self.thread.start()

    def _frames(self) -> Iterator[np.ndarray]:
        while True:
            item = self.queue.get()
            if item is None:
                return
            if isinstance(item, _Abort):
                raise RuntimeError("aborted")
            yield item

    def _run(self, fps: int) -> None:
        try:
            write_video(self.path, self._frames(), fps=fps)
        except BaseException as error:  # noqa: BLE001 - re-raised in close()
            self.error = error

    def put(self, frame: np.ndarray) -> None:
        while self.thread.is_alive():
            try:
                self.queue.put(frame, timeout=0.5)
                return
            except queue.Full:
                continue
        raise RuntimeError(f"{self.path}: overlay writer stopped: {self.error!r}")

    def close(self, abort: bool = False) -> None:
        if self.thread.is_alive():
            self.queue.put(_Abort() if abort else None)
        self.thread.join()
        if self.error is not None and not abort:
            raise RuntimeError(f"{self.path}: overlay writing failed: {self.error!r}") from self.error


def frame_boxes(top_boxes: torch.Tensor, height: int, width: int) -> np.ndarray:
    """(Q, 4) normalised cxcywh to xyxy frame pixels, clipped to the frame."""
    xyxy = cxcywh_to_xyxy(top_boxes.float()).clamp(0, 1)
    scale = torch.tensor([width, height, width, height], dtype=torch.float32)
    return (xyxy.cpu() * scale).numpy()


def predict_video(
    predictor: Predictor, frames: Iterable[tuple[str, np.ndarray]], sentences: Sequence[str], encode_batch: int = 4
) -> Iterator[tuple[int, str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Stream (index, frame name, frame, boxes (Q, 4) xyxy px, scores (Q,), masks (Q, H, W)) for all queries.

    Online: frame t is predicted from frames <= t; the proposal generator's batch is the queries.
    """
    sam, proposal = predictor.frozen.sam, predictor.model.proposal
    with torch.inference_mode():
        text = predictor.frozen.text(list(sentences))
        text_tokens = proposal.project_text(text)
        state = None
        index = 0
        for batch in _batched(frames, encode_batch):
            embeddings = sam.encode([frame for _, frame in batch])
            for (name, frame), embedding in zip(batch, embeddings):
                height, width = frame.shape[:2]
                expanded = embedding[None].expand(len(sentences), *embedding.shape)
                output, state = proposal.forward_frame(expanded, text_tokens, text.mask, state)
                boxes = frame_boxes(output.top_boxes(), height, width)
                scores = output.logits[-1].softmax(-1).amax(-1).float().cpu().numpy()
                masks = predictor.segmentor.segment(frame, boxes, embedding=embedding, size=(height, width))
                yield index, name, frame, boxes, scores, np.asarray(masks, dtype=bool)
                index += 1


def infer_video(
    predictor: Predictor,
    source: VideoSource,
    queries: Sequence[Query],
    out_dir: str | Path,
    model_config: ModelConfig,
    options: OutputOptions = OutputOptions(),
    log: Any = print,
) -> VideoResult:
    """Segment every query of one video into ``out_dir`` (layout in the module docstring); never raises for a
    bad video: an unreadable one comes back ``failed`` with one error per query. A video whose parquet file
    already verifies is ``skipped``."""
    started = time.perf_counter()
    out = masks_path(out_dir, source.name)
    result = VideoResult(source.name, source.path, "done", len(queries), parquet=str(out))
    expected = output_fingerprint(source, queries, predictor.model_id, predictor.segmentor_name, model_config, options)
    existing = verified_rows(out, expected)
    if existing is not None:
        result.status, result.rows = "skipped", existing
        result.n_frames = existing // max(1, len(queries))
        if options.overlay:
            result.overlays = [str(overlay_path(out_dir, source.name, q.exp_id, options.overlay)) for q in queries]
        return result

    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_path(out)
    sinks: list[_OverlaySink] = []
    try:
        if options.overlay:
            fps = options.overlay_fps or video_fps(source)
            sinks = [_OverlaySink(overlay_path(out_dir, source.name, q.exp_id, options.overlay), fps) for q in queries]
        with pq.ParquetWriter(temporary, RESULT_SCHEMA) as writer:
            rows: list[dict[str, Any]] = []
            frames = iter_frames(source)
            for index, name, frame, boxes, scores, masks in predict_video(predictor, frames, [q.query for q in queries], options.encode_batch):
                for q, box, score, mask in zip(queries, boxes, scores, masks):
                    rows.append(
                        {
                            "video": source.name, "exp_id": q.exp_id, "query": q.query, "frame_index": index, "frame": name,
                            "box": [float(v) for v in box], "score": float(score), "rle": mask_to_rle(mask),
                        }
                    )
                if options.png:
                    for q, mask in zip(queries, masks):
                        write_expression_pngs(Path(out_dir) / "png", source.name, q.exp_id, [(name, mask)])
                for sink, box, mask in zip(sinks, boxes, masks):
                    sink.put(overlay(frame, mask[None], box[None]))
                result.n_frames = index + 1
                if len(rows) >= ROW_GROUP_FRAMES * len(queries):
                    writer.write_table(pa.Table.from_pylist(rows, schema=RESULT_SCHEMA))
                    result.rows += len(rows)
                    rows = []
                if result.n_frames % 100 == 0:
                    log(f"{source.name}: {result.n_frames} frames")
            if rows:
                writer.write_table(pa.Table.from_pylist(rows, schema=RESULT_SCHEMA))
                result.rows += len(rows)
            if result.n_frames == 0:
                raise DataError(f"{source.path}: no frames")
            writer.add_key_value_metadata(
                {METADATA_KEY: json.dumps({"fingerprint": expected, "rows": result.rows, "version": groprompt.__version__})}
            )
        for sink in sinks:
            sink.close()
        result.overlays = [str(sink.path) for sink in sinks]
        os.replace(temporary, out)
    except Exception as error:  # noqa: BLE001 - one bad video must not stop the others; the reason is recorded
        for sink in sinks:
            sink.close(abort=True)
        temporary.unlink(missing_ok=True)
        result.status, result.rows, result.overlays = "failed", 0, []
        reason = str(error) if isinstance(error, DataError) else f"{type(error).__name__}: {error}"
        result.errors = [InputError(source.name, q.query, reason) for q in queries]
        log(f"{source.name}: failed: {reason}")
    finally:
        temporary.unlink(missing_ok=True)
    result.seconds = time.perf_counter() - started
    if result.status == "done":
        log(f"{source.name}: {result.n_frames} frames x {len(queries)} queries in {result.seconds:.1f} s")
    return result


def write_table(path: Path, rows: list[dict[str, Any]], schema: pa.Schema | None = None) -> None:
    """Write rows as parquet atomically (an empty table keeps ``schema``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=schema)
    temporary = temporary_path(path)
    pq.write_table(table, temporary)
    os.replace(temporary, path)


def write_errors(path: Path, errors: Iterable[InputError]) -> None:
    """The errors table: video, query, reason."""
    write_table(path, [asdict(e) for e in errors], ERROR_SCHEMA)
