"""Frozen SAM image embeddings as WebDataset shards, one per frame shard, with the same sample keys.

An embedding shard holds, for each sample of its frame shard and in the same order, ``<key>.json``
(frame names, stored frame size and SAM input size (h, w), storage dtype, per-frame shape) followed by
``<key>.<i>.npy``: the (C, g, g) embedding of frame i in the storage dtype. NumPy has no bfloat16, so
bfloat16 embeddings are stored as their raw 16-bit patterns (uint16) and read back as float32.

``embed_shard`` writes one shard (temporary name, rename, then a JSON record) or reuses it when it
verifies; ``read_embedding_shard`` streams one back; ``check_embeddings`` refuses a set of embeddings
computed with another model, other weights, input size, encoder dtype or storage dtype.

While the encoder runs one batch, a loader thread decodes and resizes the next ones (and pins them in
memory for a CUDA encoder), through a bounded queue; the bytes written are those of the sequential path.
"""

from __future__ import annotations

import io
import json
import queue
import tarfile
import threading
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np
import torch

from groprompt.data.manifest import MANIFEST, read_manifest
from groprompt.data.shards import ShardSample, add_member, iter_members, read_shard, verified_record
from groprompt.errors import ConfigError, DataError
from groprompt.files import Location, atomic_path, fingerprint, location, sha256_file, write_json_atomic

FORMAT_VERSION = 1
STORAGE_DTYPES: dict[str, torch.dtype] = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
"""Storage dtypes by name; float16 is the default (half the bytes of float32, within SAM's dynamic range)."""


class EncoderSettings(Protocol):
    """How a frame encoder computes: what an embedding's identity records of it."""

    dtype: str


class FrameEncoder(Protocol):
    """What writing and checking embeddings needs of the frozen image encoder (``groprompt.models.sam.FrozenSam``)."""

    name: str
    weights_id: str
    options: EncoderSettings

    @property
    def device(self) -> torch.device: ...

    @property
    def image_size(self) -> int: ...

    @property
    def embed_dim(self) -> int: ...

    @property
    def embed_grid(self) -> int: ...

    def input_size(self, original_size: tuple[int, int]) -> tuple[int, int]: ...

    def prepare(self, frame: np.ndarray) -> torch.Tensor: ...

    def encode_prepared(self, images: Sequence[torch.Tensor]) -> torch.Tensor: ...


_NUMPY_STORAGE = {"float16": np.dtype("<f2"), "bfloat16": np.dtype("<u2"), "float32": np.dtype("<f4")}
_Pending = list[tuple[str, bytes | torch.Tensor]]  # members awaiting the encoder: JSON bytes, or prepared frames
_Item = TypeVar("_Item")
PREFETCH_BATCHES = 2
"""Batches the loader thread may prepare ahead of the encoder."""
_PUT_WAIT_S = 0.1


def storage_dtype(name: str) -> torch.dtype:
    """The torch dtype called ``name``; a clear error for an unsupported one."""
    if name not in STORAGE_DTYPES:
        raise ConfigError(f"data.embed_dtype: unsupported embedding dtype {name!r}; choose one of {', '.join(STORAGE_DTYPES)}")
    return STORAGE_DTYPES[name]


def embedding_identity(sam: FrameEncoder, dtype: str) -> dict[str, Any]:
    """What makes embeddings interchangeable: model, weights, input size, encoder and storage dtypes, shape, format."""
    storage_dtype(dtype)
    return {
        "sam": sam.name,
        "weights_id": sam.weights_id,
        "image_size": sam.image_size,
        "encoder_dtype": sam.options.dtype,
        "dtype": dtype,
        "embed_shape": [sam.embed_dim, sam.embed_grid, sam.embed_grid],
        "format_version": FORMAT_VERSION,
    }


def check_embeddings(embedding_dir: str | Location, expected_identity: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The manifest rows and metadata of embeddings made with ``expected_identity``; a ``DataError`` otherwise.

    The error names the manifest and every field that differs.
    """
    manifest = location(embedding_dir) / MANIFEST
    rows, metadata = read_manifest(manifest)
    if metadata.get("stage") != "embed":
        raise DataError(f"{manifest}: not an embedding manifest (stage {metadata.get('stage')!r})")
    stored = metadata.get("identity", {})
    mismatches = [
        f"{field} is {stored.get(field)!r}, expected {value!r}" for field, value in expected_identity.items() if stored.get(field) != value
    ]
    if mismatches:
        raise DataError(
            f"{manifest}: embeddings computed with another model or dtype: {'; '.join(mismatches)} (recompute them with pipelines/embed.py)"
        )
    return rows, metadata


def to_storage(embeddings: torch.Tensor, dtype: str) -> np.ndarray:
    """(..., C, g, g) float embeddings as a NumPy array in the storage dtype (bfloat16 as uint16 bits)."""
    tensor = embeddings.detach().to(device="cpu", dtype=storage_dtype(dtype))
    if dtype == "bfloat16":
        return tensor.view(torch.int16).numpy().view(np.uint16)
    return tensor.numpy()


def from_storage(array: np.ndarray, dtype: str) -> np.ndarray:
    """A stored array as float16/float32 NumPy (bfloat16 bits widen to float32)."""
    if dtype == "bfloat16":
        return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16).float().numpy()
    return array


def embed_shard(
    sam: FrameEncoder,
    frame_shard: Location,
    frame_sha256: str,
    out_dir: Location,
    batch_size: int,
    dtype: str = "float16",
    prefetch: int = PREFETCH_BATCHES,
) -> tuple[dict[str, Any], bool]:
    """Write the embedding shard of one frame shard atomically, or reuse it if it exists and verifies.

    Frames stream through the encoder ``batch_size`` at a time (batches span samples); a loader thread prepares
    up to ``prefetch`` batches ahead (0: no thread, decode and encode alternate), so at most ``prefetch + 2``
    batches of frames are in memory (queued, being filled, being encoded). The frame shard is checked against
    ``frame_sha256`` as it streams; one that differs writes nothing. Returns the shard's record and whether it was
    computed now.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    identity = embedding_identity(sam, dtype)
    target, record_path = out_dir / frame_shard.name, out_dir / f"{frame_shard.name}.json"
    expected = fingerprint({"frame_shard_sha256": frame_sha256, "identity": identity})
    existing = verified_record(target, record_path, expected)
    if existing is not None:
        return existing, False
    samples, frames = [], 0
    with atomic_path(target) as temporary:
        with tarfile.open(temporary, "w", format=tarfile.PAX_FORMAT) as tar:
            for name, payload in _embedding_members(sam, frame_shard, frame_sha256, batch_size, dtype, prefetch):
                add_member(tar, name, payload)
                if name.endswith(".json"):
                    samples.append(name.removesuffix(".json"))
                else:
                    frames += 1
        size, digest = temporary.stat().st_size, sha256_file(temporary)
    record = {
        "shard": target.name,
        "frame_shard_sha256": frame_sha256,
        "samples": samples,
        "n_samples": len(samples),
        "n_frames": frames,
        "bytes": size,
        "sha256": digest,
        "fingerprint": expected,
        "identity": identity,
    }
    write_json_atomic(record_path, record)
    return record, True


def _embedding_members(
    sam: FrameEncoder, frame_shard: Location, frame_sha256: str, batch_size: int, dtype: str, prefetch: int
) -> Iterator[tuple[str, bytes]]:
    """The members of an embedding shard in order, encoding frames ``batch_size`` at a time."""
    batches = _pending_batches(sam, frame_shard, frame_sha256, batch_size, dtype)
    for pending in prefetched(batches, prefetch) if prefetch > 0 else batches:
        yield from _encoded(sam, pending, dtype)


def _pending_batches(sam: FrameEncoder, frame_shard: Location, frame_sha256: str, batch_size: int, dtype: str) -> Generator[_Pending]:
    """The shard's members in order, cut after every ``batch_size`` frames, frames decoded and ``prepare``d
    (in pinned memory when the encoder is on CUDA); the shard checked against ``frame_sha256`` on the stream."""
    pin = sam.device.type == "cuda"
    pending: _Pending = []
    queued = 0
    for sample in read_shard(frame_shard, sha256=frame_sha256):
        pending.append((f"{sample.key}.json", _sample_meta(sam, sample, dtype)))
        for index in range(len(sample.frames)):
            image = sam.prepare(_stored_frame(frame_shard, sample, index))
            pending.append((f"{sample.key}.{index:04d}.npy", image.pin_memory() if pin else image))
            queued += 1
            if queued == batch_size:
                yield pending
                pending, queued = [], 0
    if pending:
        yield pending


def prefetched(items: Generator[_Item], depth: int) -> Iterator[_Item]:
    """``items`` produced on a background thread at most ``depth`` ahead of the consumer (a bounded queue).

    The producer's exception is raised here; leaving the loop early stops the thread and closes ``items``.
    """
    buffer: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                buffer.put(entry, timeout=_PUT_WAIT_S)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(("item", item)):
                    return
            put(("end", None))
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, which raises it
            put(("error", error))
        finally:
            items.close()

    thread = threading.Thread(target=produce, name="embed-loader", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = buffer.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        thread.join()


def _encoded(sam: FrameEncoder, pending: _Pending, dtype: str) -> Iterator[tuple[str, bytes]]:
    """Pending members with each frame replaced by its ``.npy`` embedding; one encoder pass for all frames."""
    images = [payload for _, payload in pending if isinstance(payload, torch.Tensor)]
    embeddings = iter(to_storage(sam.encode_prepared(images), dtype))
    for name, payload in pending:
        yield name, payload if isinstance(payload, bytes) else _npy_bytes(next(embeddings))


def _sample_meta(sam: FrameEncoder, sample: ShardSample, dtype: str) -> bytes:
    stored = (sample.meta["stored_height"], sample.meta["stored_width"])
    meta = {
        "key": sample.key,
        "frame_names": sample.meta["frame_names"],
        "n_frames": len(sample.frames),
        "stored_size": list(stored),
        "input_size": list(sam.input_size(stored)),
        "dtype": dtype,
        "shape": [sam.embed_dim, sam.embed_grid, sam.embed_grid],
    }
    return json.dumps(meta, sort_keys=True).encode()


def _stored_frame(frame_shard: Location, sample: ShardSample, index: int) -> np.ndarray:
    """Frame ``index`` of a sample, decoded; it must have the stored size that the sample's JSON records."""
    frame = sample.frame(index)
    stored = (sample.meta["stored_height"], sample.meta["stored_width"])
    if frame.shape[:2] != stored:
        raise DataError(f"{frame_shard}: frame {index} of {sample.key} is {frame.shape[:2]}, its JSON says {stored}")
    return frame


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


@dataclass
class _SampleReader:
    """A sample of an embedding shard being filled from its members."""

    key: str
    meta: dict[str, Any]
    array: np.ndarray
    filled: int = 0

    @classmethod
    def start(cls, shard: Location, key: str, payload: bytes) -> _SampleReader:
        meta = json.loads(payload)
        dtype = meta.get("dtype")
        if dtype not in _NUMPY_STORAGE:
            raise DataError(f"{shard}: sample {key} has unsupported dtype {dtype!r}")
        out_dtype = np.float32 if dtype == "bfloat16" else _NUMPY_STORAGE[dtype]
        return cls(key, meta, np.empty((meta["n_frames"], *meta["shape"]), out_dtype))

    def add(self, shard: Location, name: str, index: str, payload: bytes) -> None:
        if index != f"{self.filled:04d}" or self.filled >= len(self.array):
            raise DataError(f"{shard}: member {name} is out of order (expected frame {self.filled} of {self.key})")
        stored = np.load(io.BytesIO(payload), allow_pickle=False)
        expected = _NUMPY_STORAGE[self.meta["dtype"]]
        if stored.dtype != expected or stored.shape != self.array.shape[1:]:
            raise DataError(f"{shard}: member {name} is {stored.dtype} {stored.shape}, expected {expected} {self.array.shape[1:]}")
        self.array[self.filled] = from_storage(stored, self.meta["dtype"])
        self.filled += 1

    def finish(self, shard: Location) -> tuple[str, dict[str, Any], np.ndarray]:
        if self.filled != len(self.array):
            raise DataError(f"{shard}: sample {self.key} has {self.filled} of {len(self.array)} embeddings")
        return self.key, self.meta, self.array


def read_embedding_shard(path: str | Location) -> Iterator[tuple[str, dict[str, Any], np.ndarray]]:
    """Stream ``(key, meta, embeddings (T, C, g, g))`` per sample; float16/float32 as stored, bfloat16 as float32.

    Members must be plain files with safe names, each sample's JSON first and its frames in order;
    errors name the file.
    """
    path = location(path)
    current: _SampleReader | None = None
    try:
        for key, extension, read in iter_members(path):
            if extension == "json":
                if current is not None:
                    yield current.finish(path)
                current = _SampleReader.start(path, key, read())
            elif current is not None and key == current.key and extension.endswith(".npy"):
                current.add(path, f"{key}.{extension}", extension.removesuffix(".npy"), read())
            else:
                raise DataError(f"{path}: unexpected member {key}.{extension}")
    except DataError:
        raise
    except (ValueError, KeyError, OSError) as error:
        raise DataError(f"{path}: not a readable embedding shard: {error!r}") from error
    if current is not None:
        yield current.finish(path)
