"""Embedding throughput: the embed stage's batched per-shard path against the naive per-frame loop.

    python benchmarks/embed_throughput.py                       # tiny SAM, 64 frames
    python benchmarks/embed_throughput.py --sam vit_b --frames 4  # random ViT-B weights (about 18 s a frame on 2 cores)

On the same RefShapes frame shards and the same model, in one run:
  (a) stage: ``embed_shard`` per frame shard (batched ``FrozenSam.encode``, float16 members, one tar per shard),
      in one process with every core's threads, and as the stage's pool runs it (``plan_pool``: processes x
      threads, shards dealt round-robin) without Ray's start-up;
  (b) naive: per frame ``SamPredictor(sam).set_image(frame)``, then ``np.save`` of ``predictor.features``;
  (c) Ray:   ``pipelines/embed.py``'s ``embed_shards`` end to end (actor start-up and model load included).
Each (a)/(b) measurement starts fresh processes that load the model, warm up on one frame and then time their
passes in step (a barrier); rounds alternate the paths and the best pass counts. Peak memory is the summed
maxrss of the processes. With CUDA, ViT-B encoder frames/s in float32, bfloat16 and float16 are added.
"""

from __future__ import annotations

import argparse
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

import groprompt  # noqa: F401  (first: it makes torchvision, hence segment_anything, importable on CPU torch)
from segment_anything import SamPredictor  # noqa: E402
from groprompt.cluster import init_ray
from groprompt.data.embeddings import STORAGE_DTYPES, embed_shard
from groprompt.data.manifest import read_manifest
from groprompt.data.refshapes import RefShapesSpec, write_refshapes
from groprompt.data.shards import ShardSettings, read_shard
from groprompt.models.sam import SAM_CONFIGS, FrozenSam

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's pipelines/ package
from pipelines.embed import embed_shards, encoder_bytes, plan_pool  # noqa: E402
from pipelines.shard import shard_dataset  # noqa: E402

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
    repeats: int


def worker(name: str, rows: Rows, threads: int | None, job: Job, barrier: Any, results: Any) -> None:
    """One measured process: load the model, warm up on one frame, then time ``job.repeats`` passes in step."""
    if threads is not None:
        torch.set_num_threads(threads)
    sam = FrozenSam.from_name(job.sam_name)
    first = next(read_shard(job.frames_dir / rows[0]["shard"])).frame(0)
    if name == "stage":
        sam.encode([first])
    else:
        SamPredictor(sam.sam).set_image(first)
    passes = []
    for repeat in range(job.repeats):
        target = job.out / f"{name}-{os.getpid()}-{repeat}"
        target.mkdir(parents=True)
        barrier.wait()
        start = time.monotonic()
        frames, written = PASSES[name](sam, job.frames_dir, rows, target, job.batch_size, job.dtype)
        passes.append((start, time.monotonic(), frames, written))
    results.put((passes, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def measure(name: str, workers: int, threads: int | None, rows: Rows, job: Job) -> dict[str, float]:
    """Frames/s of the best pass of ``workers`` fresh processes sharing the shards, their summed peak memory."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(workers), context.Queue()
    processes = [context.Process(target=worker, args=(name, rows[i::workers], threads, job, barrier, results)) for i in range(workers)]
    for process in processes:
        process.start()
    outputs = []
    while len(outputs) < workers:
        try:
            outputs.append(results.get(timeout=5))
        except queue.Empty:
            if any(process.exitcode not in (None, 0) for process in processes):
                raise RuntimeError(f"a {name} worker failed") from None
    for process in processes:
        process.join()
    passes = list(zip(*(output[0] for output in outputs), strict=True))  # per repeat, one entry per worker
    frames = sum(entry[2] for entry in passes[0])
    span = min(max(entry[1] for entry in repeat) - min(entry[0] for entry in repeat) for repeat in passes)
    written = sum(entry[3] for entry in passes[0])
    return {"fps": frames / span, "bytes_per_frame": written / frames, "peak_mib": sum(output[1] for output in outputs)}


def gpu_report(batch_size: int, steps: int = 5) -> list[str]:
    """ViT-B image-encoder frames/s on CUDA in float32 and under bfloat16 / float16 autocast, batched."""
    if not torch.cuda.is_available():
        return ["GPU: none (torch.cuda.is_available() is False); ViT-B bfloat16/float16 GPU throughput not measured"]
    sam = FrozenSam.from_name("vit_b").to("cuda")
    frames = [np.random.default_rng(i).integers(0, 256, (720, 1280, 3), dtype=np.uint8) for i in range(batch_size)]
    inputs = torch.stack([sam.preprocess(frame) for frame in frames])
    lines = [f"GPU: {torch.cuda.get_device_name()}, ViT-B image encoder, batch {batch_size}, 1024 px"]
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        with torch.inference_mode(), torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
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
    parser.add_argument("--frames", type=int, default=None, help="frames per pass (default: 64 for tiny SAMs, else 4)")
    parser.add_argument("--batch-size", type=int, default=None, help="stage batch (default: 16 for tiny SAMs, else 2)")
    parser.add_argument("--dtype", default="float16", choices=sorted(STORAGE_DTYPES))
    parser.add_argument("--size", type=int, default=256, help="frame side in pixels")
    parser.add_argument("--rounds", type=int, default=None, help="rounds, alternating the paths (default: 2 for tiny SAMs, else 1)")
    parser.add_argument("--repeats", type=int, default=None, help="timed passes per round (default: 3 for tiny SAMs, else 1)")
    parser.add_argument("--no-ray", dest="ray", action="store_false", help="skip (c), the stage through Ray")
    args = parser.parse_args(argv)
    tiny = args.sam.startswith("tiny")
    frames = args.frames or (64 if tiny else 4)
    batch_size = args.batch_size or (16 if tiny else 2)
    rounds, repeats = args.rounds or (2 if tiny else 1), args.repeats or (3 if tiny else 1)

    init_ray(None)
    with tempfile.TemporaryDirectory() as tmp:
        frames_dir, rows = make_frames(Path(tmp), frames, args.size)
        job = Job(args.sam, frames_dir, Path(tmp) / "out", batch_size, args.dtype, repeats)
        cpus = os.cpu_count() or 1
        pool = plan_pool(len(rows), cpus, 0, ray.cluster_resources().get("memory", 0.0), encoder_bytes(SAM_CONFIGS[args.sam], batch_size))
        methods = {f"(a) stage per-shard path, 1 process x {cpus} threads": ("stage", 1, cpus)}
        if pool.actors > 1:
            methods[f"(a) stage per-shard path as its pool runs, {pool.actors} processes x {pool.threads} threads"] = ("stage", pool.actors, pool.threads)
        methods[f"(b) naive SamPredictor loop, 1 process x {torch.get_num_threads()} threads (torch default)"] = ("naive", 1, None)
        results: dict[str, list[dict[str, float]]] = {label: [] for label in methods}
        for _ in range(rounds):
            for label, (name, workers, threads) in methods.items():
                results[label].append(measure(name, workers, threads, rows, job))
        best = {label: max(runs, key=lambda run: run["fps"]) for label, runs in results.items()}
        naive = best[list(methods)[-1]]["fps"]
        print(f"\nembed throughput: SAM {args.sam} (random weights), {sum(row['n_frames'] for row in rows)} frames of {args.size} px "
              f"in {len(rows)} shards, stage batch {batch_size}, stage storage {args.dtype} (naive: float32 .npy files); "
              f"{cpus} CPU cores, load average {os.getloadavg()[0]:.1f}; best of {rounds * repeats} passes after a 1-frame warm-up")  # fmt: skip
        for label, run in best.items():
            peak = max(r["peak_mib"] for r in results[label])
            print(f"  {label:78s} {run['fps']:8.2f} frames/s  {run['fps'] / naive:5.2f}x  peak {peak:6.0f} MiB  {run['bytes_per_frame'] / 1024:7.1f} KiB/frame")
        if args.ray:
            start = time.perf_counter()
            embed_shards(frames_dir, Path(tmp) / "ray", args.sam, batch_size=batch_size, dtype=args.dtype)
            wall = time.perf_counter() - start
            n_frames = sum(row["n_frames"] for row in rows)
            print(f"  (c) stage through Ray, end to end with actor start-up: {n_frames / wall:.2f} frames/s ({wall:.1f} s wall; its encoding rate is in the line above)")
    for line in gpu_report(batch_size=8):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
