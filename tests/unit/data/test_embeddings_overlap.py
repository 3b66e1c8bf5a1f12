"""The embed path's loader thread: the same bytes as the sequential path, real overlap, a bounded queue, clean failures."""

from __future__ import annotations

import threading
import time
from collections.abc import Generator
from pathlib import Path

import pytest
import torch

from groprompt.data.embeddings import embed_shard, prefetched
from groprompt.errors import DataError
from groprompt.models.sam import FrozenSam
from tests.helpers import make_frame_shards

ENCODE_SECONDS = 0.15  # a slow encoder, so that overlap shows in the timings


@pytest.fixture(scope="module")
def frame_shards(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    root = tmp_path_factory.mktemp("overlap")
    return root / "frames", make_frame_shards(root)


@pytest.fixture(scope="module")
def sam() -> FrozenSam:
    return FrozenSam.from_name("tiny")


def largest(records: list[dict]) -> dict:
    return max(records, key=lambda record: record["n_frames"])


def loader_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "embed-loader"]


@pytest.mark.parametrize("batch_size", [1, 3])
def test_the_overlapped_path_writes_the_same_bytes_as_the_sequential_one(
    sam: FrozenSam, frame_shards, tmp_path: Path, batch_size: int
) -> None:
    frames_dir, records = frame_shards
    for record in records:
        outputs = {}
        for prefetch in (0, 2):
            out = tmp_path / f"{batch_size}-{prefetch}"
            out.mkdir(exist_ok=True)
            written, computed = embed_shard(sam, frames_dir / record["shard"], record["sha256"], out, batch_size, "float16", prefetch)
            assert computed
            outputs[prefetch] = ((out / written["shard"]).read_bytes(), written)
        assert outputs[2] == outputs[0]
    assert not loader_threads()


def test_frames_are_prepared_while_the_encoder_runs_and_never_far_ahead(sam: FrozenSam, frame_shards, tmp_path: Path, monkeypatch) -> None:
    frames_dir, records = frame_shards
    record, batch_size, depth = largest(records), 2, 1
    prepared: list[tuple[float, str]] = []  # (time, thread name) of each prepared frame
    encodes: list[tuple[float, float, int]] = []  # (start, end, frames prepared by the start) of each encoder pass
    original_prepare, original_encode = FrozenSam.prepare, FrozenSam.encode_prepared

    def prepare(self: FrozenSam, frame):
        prepared.append((time.perf_counter(), threading.current_thread().name))
        return original_prepare(self, frame)

    def encode(self: FrozenSam, images):
        start, ready = time.perf_counter(), len(prepared)
        time.sleep(ENCODE_SECONDS)
        result = original_encode(self, images)
        encodes.append((start, time.perf_counter(), ready))
        return result

    monkeypatch.setattr(FrozenSam, "prepare", prepare)
    monkeypatch.setattr(FrozenSam, "encode_prepared", encode)
    embed_shard(sam, frames_dir / record["shard"], record["sha256"], tmp_path, batch_size, "float16", prefetch=depth)

    assert len(encodes) >= 3 and {name for _, name in prepared} == {"embed-loader"}
    during = [t for t, _ in prepared if any(start < t < end for start, end, _ in encodes)]
    assert during, "no frame was prepared while the encoder ran"
    for index, (_, _, ready) in enumerate(encodes):  # the queue holds `depth` batches, the loader one more in hand
        assert ready <= (index + 1 + depth + 1) * batch_size


def test_a_loader_error_reaches_the_caller_and_leaves_no_shard(sam: FrozenSam, frame_shards, tmp_path: Path, monkeypatch) -> None:
    frames_dir, records = frame_shards
    record = largest(records)
    calls = []

    def failing_prepare(self: FrozenSam, frame):
        calls.append(1)
        if len(calls) == 3:
            raise DataError("frame 3 is unreadable")
        return torch.from_numpy(self.transform.apply_image(frame))

    monkeypatch.setattr(FrozenSam, "prepare", failing_prepare)
    with pytest.raises(DataError, match="frame 3 is unreadable"):
        embed_shard(sam, frames_dir / record["shard"], record["sha256"], tmp_path, 1, "float16")
    assert list(tmp_path.iterdir()) == [] and not loader_threads()


def test_an_encoder_error_stops_the_loader(sam: FrozenSam, frame_shards, tmp_path: Path, monkeypatch) -> None:
    frames_dir, records = frame_shards
    record = largest(records)

    def failing_encode(self: FrozenSam, images):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(FrozenSam, "encode_prepared", failing_encode)
    with pytest.raises(RuntimeError, match="out of memory"):
        embed_shard(sam, frames_dir / record["shard"], record["sha256"], tmp_path, 1, "float16")
    assert list(tmp_path.iterdir()) == [] and not loader_threads()


def test_leaving_a_prefetched_loop_early_closes_the_source() -> None:
    closed = threading.Event()

    def numbers() -> Generator[int]:
        try:
            yield from range(1000)
        finally:
            closed.set()

    taken = []
    for number in prefetched(numbers(), depth=2):
        taken.append(number)
        if number == 4:
            break
    assert taken == [0, 1, 2, 3, 4] and closed.is_set() and not loader_threads()
