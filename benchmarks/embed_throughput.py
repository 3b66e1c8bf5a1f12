"""Embedding throughput: the embed stage's batched per-shard path against the naive per-frame loop.

    python benchmarks/embed_throughput.py                       # tiny SAM, 64 frames
    python benchmarks/embed_throughput.py --sam vit_b --no-ray  # random ViT-B weights, 2 frames (~15 s each on 2 cores)

On the same RefShapes frame shards and the same model, in one run:
  (a) stage: ``embed_shard`` per frame shard (batched ``FrozenSam.encode``, float16 members, one tar per shard)
      in processes set up as the stage's actors are (``prepare_encoder_process``): one process with every
      core's threads, and the stage's pool (``plan_pool``: processes x threads, shards dealt round-robin)
      without Ray's start-up;
  (b) naive: per frame ``SamPredictor(sam).set_image(frame)``, then ``np.save`` of ``predictor.features``;
  (c) Ray:   ``pipelines/embed.py``'s ``embed_shards`` end to end (actor start-up and model load included).
Every (a)/(b) path gets its own fresh processes, which load the model and warm up on one frame before any
timing; then rounds alternate the paths (a pool's processes start each pass together) and the best pass
counts. Peak memory is the summed maxrss of a path's processes. ViTs run at batch 1 by default: on a CPU
they gain nothing from batching and hold about 2.5 GiB per frame in flight. With CUDA, ViT-B encoder
frames/s in float32, bfloat16 and float16 are added.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import multiprocessing
import os
import queue
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch

# isort: off
import groprompt  # noqa: F401  (first: it makes torchvision, hence segment_anything, importable on CPU torch)
from segment_anything import SamPredictor

# isort: on
from groprompt.cluster import init_ray
from groprompt.data.embeddings import STORAGE_DTYPES, embed_shard
from groprompt.data.manifest import read_manifest
from groprompt.data.refshapes import RefShapesSpec, write_refshapes
from groprompt.data.shards import ShardSettings, read_shard
from groprompt.models.sam import SAM_CONFIGS, FrozenSam

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's pipelines/ package
from groprompt.stages.embed import embed_shards
from groprompt.stages.encoder_pool import encoder_bytes, plan_pool, prepare_encoder_process
from groprompt.stages.shard import shard_dataset

VIT_B_TFLOP_PER_FRAME = 0.97  # image encoder at 1024 px
FRAMES_PER_VIDEO = 8

Rows = list[dict[str, Any]]


def make_frames(out: Path, frames: int, size: int) -> tuple[Path, Rows]:
    """At least ``frames`` RefShapes frames, one 8-frame window per shard (several shards for the pool)."""
    per_video = min(FRAMES_PER_VIDEO, max(2, frames))
    spec = RefShapesSpec(videos=math.ceil(frames / per_video), frames=per_video, size=size, seed=0)
    write_refshapes(out / "refshapes", spec, valid_fraction=0.0, progress=False)
    settings = ShardSettings(window=per_video, shard_bytes=1, with_masks=False)
    manifest = shard_dataset("refshapes", str(out / "refshapes"), "train", out / "frames", settings)
    return out / "frames", read_manifest(manifest)[0]


def stage_pass(sam: FrozenSam, frames_dir: Path, rows: Rows, out: Path, batch_size: int, dtype: str) -> tuple[int, int]:
    """(a): the embed stage's per-shard path; returns (frames, bytes written)."""
    records = [embed_shard(sam, frames_dir / row["shard"], row["sha256"], out, batch_size, dtype)[0] for row in rows]
    return sum(r["n_frames"] for r in records), sum(r["bytes"] for r in records)


def naive_pass(sam: FrozenSam, frames_dir: Path, rows: Rows, out: Path, batch_size: int, dtype: str) -> tuple[int, int]:
    """(b): what a user writes without the stage: one ``SamPredictor.set_image`` and one ``.npy`` per frame."""
    frames = written = 0
    for row in rows:
        for sample in read_shard(frames_dir / row["shard"]):
            for index in range(len(sample.frames)):
                predictor = SamPredictor(sam.sam)
                predictor.set_image(sample.frame(index))
                path = out / f"{sample.key}.{index:04d}.npy"
                np.save(path, predictor.features.cpu().numpy())
                frames, written = frames + 1, written + path.stat().st_size
    return frames, written


PASSES: dict[str, Callable[..., tuple[int, int]]] = {"stage": stage_pass, "naive": naive_pass}


@dataclass(frozen=True)
class Job:
    """What every measured process shares."""

    sam_name: str
    frames_dir: Path
    out: Path
    batch_size: int
    dtype: str


Pass = tuple[float, int, int]  # seconds, frames, bytes written


def worker(name: str, rows: Rows, threads: int | None, job: Job, barrier: Any, commands: Any, results: Any) -> None:
    """One measured process: load the model, warm up on one frame, say so, then run one timed pass per command."""
    if threads is not None:  # the stage's processes are set up as its actors are; the naive loop keeps the defaults
        prepare_encoder_process(threads)
    sam = FrozenSam.from_name(job.sam_name)
    first = next(read_shard(job.frames_dir / rows[0]["shard"])).frame(0)
    if name == "stage":
        sam.encode([first])
    else:
        SamPredictor(sam.sam).set_image(first)
    results.put("ready")
    while (round_ := commands.get()) is not None:
        target = job.out / f"{name}-{os.getpid()}-{round_}"
        target.mkdir(parents=True)
        barrier.wait()
        start = time.monotonic()
        frames, written = PASSES[name](sam, job.frames_dir, rows, target, job.batch_size, job.dtype)
        results.put((start, time.monotonic(), frames, written))
    results.put(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


class Group:
    """Fresh processes running one path in step, each on its share of the shards (round-robin)."""

    def __init__(self, name: str, workers: int, threads: int | None, rows: Rows, job: Job) -> None:
        context = multiprocessing.get_context("spawn")
        self.barrier, self.results = context.Barrier(workers), context.Queue()  # kept: children unpickle them later
        self.commands = [context.Queue() for _ in range(workers)]
        self.processes = [
            context.Process(target=worker, args=(name, rows[i::workers], threads, job, self.barrier, self.commands[i], self.results))
            for i in range(workers)
        ]
        for process in self.processes:
            process.start()

    def collect(self) -> list[Any]:
        """One message from every process."""
        messages: list[Any] = []
        while len(messages) < len(self.processes):
            try:
                messages.append(self.results.get(timeout=5))
            except queue.Empty:
                if any(process.exitcode not in (None, 0) for process in self.processes):
                    raise RuntimeError("a measured process failed") from None
        return messages

    def run(self, round_: int) -> Pass:
        """One timed pass over all the shards."""
        for commands in self.commands:
            commands.put(round_)
        passes = self.collect()
        seconds = max(p[1] for p in passes) - min(p[0] for p in passes)
        return seconds, sum(p[2] for p in passes), sum(p[3] for p in passes)

    def close(self) -> float:
        """Stop the processes; their summed peak memory in MiB."""
        for commands in self.commands:
            commands.put(None)
        peak = sum(self.collect())
        for process in self.processes:
            process.join()
        return peak


def measure(methods: dict[str, tuple[str, int, int | None]], rows: Rows, job: Job, rounds: int) -> dict[str, tuple[list[Pass], float]]:
    """Passes and peak memory per method: all load and warm up first, then rounds alternate them (order flips each round)."""
    groups = {label: Group(name, workers, threads, rows, job) for label, (name, workers, threads) in methods.items()}
    for group in groups.values():
        group.collect()
    passes: dict[str, list[Pass]] = {label: [] for label in groups}
    for round_ in range(rounds):
        for label in list(groups)[:: 1 if round_ % 2 == 0 else -1]:
            passes[label].append(groups[label].run(round_))
    return {label: (passes[label], group.close()) for label, group in groups.items()}


def gpu_report(batch_size: int, steps: int = 5) -> list[str]:
    """ViT-B image-encoder frames/s on CUDA in float32 and under bfloat16 / float16 autocast, batched."""
    if not torch.cuda.is_available():
        return ["GPU: none (torch.cuda.is_available() is False); ViT-B bfloat16/float16 GPU throughput not measured"]
    sam = FrozenSam.from_name("vit_b").to("cuda")
    frames = [np.random.default_rng(i).integers(0, 256, (720, 1280, 3), dtype=np.uint8) for i in range(batch_size)]
    inputs = torch.stack([sam.preprocess(frame) for frame in frames])
    lines = [f"GPU: {torch.cuda.get_device_name()}, ViT-B image encoder, batch {batch_size}, 1024 px"]
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        autocast = contextlib.nullcontext() if dtype == torch.float32 else torch.autocast("cuda", dtype=dtype)
        with torch.inference_mode(), autocast:
            sam.sam.image_encoder(inputs)
            torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(steps):
                sam.sam.image_encoder(inputs)
            torch.cuda.synchronize()
        fps = steps * batch_size / (time.perf_counter() - start)
        lines.append(f"  {str(dtype).removeprefix('torch.'):9s} {fps:8.1f} frames/s  {fps * VIT_B_TFLOP_PER_FRAME:6.1f} TFLOP/s")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sam", default="tiny", choices=sorted(SAM_CONFIGS))
    parser.add_argument("--frames", type=int, default=None, help="frames per pass (default: 64 for tiny SAMs, else 2)")
    parser.add_argument("--batch-size", type=int, default=None, help="stage batch (default: 16 for tiny SAMs, else 1)")
    parser.add_argument("--dtype", default="float16", choices=sorted(STORAGE_DTYPES))
    parser.add_argument("--size", type=int, default=256, help="frame side in pixels")
    parser.add_argument("--rounds", type=int, default=None, help="timed passes per path, alternating (default: 6 for tiny SAMs, else 2)")
    parser.add_argument("--no-ray", dest="ray", action="store_false", help="skip (c), the stage through Ray")
    args = parser.parse_args(argv)
    tiny = args.sam.startswith("tiny")
    frames = args.frames or (64 if tiny else 2)
    batch_size = args.batch_size or (16 if tiny else 1)
    rounds = args.rounds or (6 if tiny else 2)

    init_ray(None)
    with tempfile.TemporaryDirectory() as tmp:
        frames_dir, rows = make_frames(Path(tmp), frames, args.size)
        job = Job(args.sam, frames_dir, Path(tmp) / "out", batch_size, args.dtype)
        methods = cpu_methods(len(rows), encoder_bytes(SAM_CONFIGS[args.sam], batch_size))
        results = measure(methods, rows, job, rounds)
        n_frames = sum(row["n_frames"] for row in rows)
        print(
            f"\nembed throughput: SAM {args.sam} (random weights), {n_frames} frames of {args.size} px in {len(rows)} shards, "
            f"stage batch {batch_size} stored as {args.dtype} (naive: float32 .npy files); {os.cpu_count()} CPU cores, "
            f"load average {os.getloadavg()[0]:.1f}; best of {rounds} alternating passes after a 1-frame warm-up"
        )
        for line in report_lines(results):
            print(line)
        if args.ray:
            start = time.perf_counter()
            embed_shards(frames_dir, Path(tmp) / "ray", args.sam, batch_size=batch_size, dtype=args.dtype)
            wall = time.perf_counter() - start
            print(f"  (c) stage through Ray, end to end with actor start-up: {n_frames / wall:.2f} frames/s ({wall:.1f} s wall)")
    for line in gpu_report(batch_size=8):
        print(line)
    return 0


def cpu_methods(n_shards: int, actor_bytes: int) -> dict[str, tuple[str, int, int | None]]:
    """Label -> (pass, processes, torch threads): the stage on all cores, as its pool runs (if >1 actor), naive last."""
    cpus = os.cpu_count() or 1
    pool = plan_pool(n_shards, cpus, 0, ray.cluster_resources().get("memory", 0.0), actor_bytes)
    methods: dict[str, tuple[str, int, int | None]] = {f"(a) stage per-shard path, 1 process x {cpus} threads": ("stage", 1, cpus)}
    if pool.actors > 1:
        label = f"(a) stage per-shard path as its pool runs, {pool.actors} processes x {pool.threads} threads"
        methods[label] = ("stage", pool.actors, pool.threads)
    methods[f"(b) naive SamPredictor loop, 1 process x {torch.get_num_threads()} threads (torch default)"] = ("naive", 1, None)
    return methods


def report_lines(results: dict[str, tuple[list[Pass], float]]) -> list[str]:
    """One line per method: best frames/s, ratio to the naive loop (the last method), peak memory, bytes per frame."""
    best = {label: max(passes, key=lambda p: p[1] / p[0]) for label, (passes, _) in results.items()}
    naive = next(reversed(best.values()))
    lines = []
    for label, (seconds, frames, written) in best.items():
        fps, ratio, kib = frames / seconds, frames / seconds / (naive[1] / naive[0]), written / frames / 1024
        lines.append(f"  {label:78s} {fps:9.3f} frames/s  {ratio:5.2f}x  peak {results[label][1]:6.0f} MiB  {kib:7.1f} KiB/frame")
    return lines


if __name__ == "__main__":
    sys.exit(main())
