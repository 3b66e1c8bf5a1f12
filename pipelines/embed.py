"""Precompute frozen SAM image embeddings of frame shards on a Ray Data actor pool (atomic and resumable).

    python pipelines/embed.py --shards work/shards/davis --out work/embeddings/davis --sam vit_b --checkpoint sam_vit_b.pth

One frame shard becomes one embedding shard with the same sample keys; each actor loads the encoder once and
streams its shards through it ``--batch-size`` frames at a time. A re-run recomputes only missing or stale shards.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import groprompt
from groprompt.cluster import cluster_cpus, cluster_gpus, init_ray
from groprompt.data.embeddings import MANIFEST, STORAGE_DTYPES, embed_shard, storage_dtype
from groprompt.data.manifest import read_manifest, sha256_file, write_manifest
from groprompt.data.records import DataError
from groprompt.models.sam import SAM_CONFIGS, FrozenSam, SamConfig

DEFAULT_BATCH_SIZE = 4  # ViT-B on CPU holds about 2.5 GiB per frame in flight; raise it on GPUs
_RUNTIME_BYTES = 512 * 2**20  # an actor's Python, torch and Ray worker before the model
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc mallopt parameters (malloc.h)


@dataclass(frozen=True)
class PoolPlan:
    """How many encoder actors, what each asks of Ray, and how many torch threads each runs."""

    actors: int
    num_cpus: float
    num_gpus: float
    memory: int  # bytes reserved per CPU actor (0 on GPUs)
    threads: int


def encoder_bytes(config: SamConfig, batch_size: int) -> int:
    """Rough peak host memory of a CPU encoder actor: runtime, weights, and per frame in flight the attention
    matrices (heads x tokens x keys float32, about three alive at once) plus the token activations.

    ViT-B at batch 1: about 3.1 GiB (measured 3.2 GiB).
    """
    tokens = config.embed_grid**2
    keys = tokens if config.encoder_global_attn_indexes else config.window_size**2
    dim, depth = config.encoder_embed_dim, config.encoder_depth
    weights = 4 * (12 * depth * dim**2 + 3 * config.patch_size**2 * dim + 10 * dim * config.prompt_embed_dim)
    per_frame = 4 * (3 * config.encoder_num_heads * tokens * keys + 12 * tokens * dim)
    return _RUNTIME_BYTES + weights + batch_size * per_frame


def plan_pool(n_shards: int, cpus: float, gpus: float, memory: float, actor_bytes: int) -> PoolPlan:
    """One actor per GPU when there are GPUs, else one per CPU as far as ``memory`` holds ``actor_bytes`` each.

    At least one actor, never more than shards; a CPU actor reserves ``actor_bytes`` (at most all of
    ``memory``). Each actor asks Ray for one logical CPU, so that the pool fits any node layout, and runs
    ``cpus / actors`` torch threads (on GPU nodes they decode and preprocess frames).
    """
    if gpus >= 1:
        actors = max(1, min(n_shards, int(gpus)))
        return PoolPlan(actors, num_cpus=1, num_gpus=1, memory=0, threads=max(1, int(cpus // actors)))
    actors = max(1, min(n_shards, int(cpus), int(memory // actor_bytes)))
    return PoolPlan(actors, num_cpus=1, num_gpus=0, memory=min(actor_bytes, int(memory)), threads=max(1, int(cpus // actors)))


def prepare_encoder_process(threads: int) -> None:
    """Set up a process that only encodes: ``threads`` torch threads (at most the local cores) and, with glibc,
    freed memory kept in the heap for reuse instead of handed back to the kernel.

    Otherwise every batch maps the encoder's large buffers afresh (ViT-B at 1024 px: 0.8 GB attention maps) and
    the kernel zeroes them page by page: 8-10 CPU-seconds of system time per ViT-B frame on a 2-core CPU.
    The process keeps its peak memory, which an encoder actor holds anyway.
    """
    torch.set_num_threads(max(1, min(threads, os.cpu_count() or 1)))
    if platform.libc_ver()[0] != "glibc":
        return
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(_M_MMAP_MAX, 0)  # large blocks come from the heap, which keeps them
    libc.mallopt(_M_TRIM_THRESHOLD, -1)  # never trim the heap


class ShardEmbedder:
    """A Ray Data actor: one frozen SAM encoder, loaded once, embedding one frame shard per row."""

    def __init__(
        self, shards_dir: str, out_dir: str, sam_name: str, checkpoint: str | None, seed: int, batch_size: int, dtype: str, pool: PoolPlan
    ) -> None:
        prepare_encoder_process(pool.threads)
        device = "cuda" if pool.num_gpus else "cpu"
        self.sam = FrozenSam.from_name(sam_name, checkpoint, seed).to(device)
        self.shards_dir, self.out_dir = Path(shards_dir), Path(out_dir)
        self.batch_size, self.dtype = batch_size, dtype

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        start = time.perf_counter()
        record, computed = embed_shard(self.sam, self.shards_dir / row["shard"], row["sha256"], self.out_dir, self.batch_size, self.dtype)
        seconds = time.perf_counter() - start
        if computed:
            print(f"{record['shard']}: {record['n_frames']} frames in {seconds:.2f} s", flush=True)
        return {"record": record, "computed": computed, "seconds": seconds}


def embed_shards(
    shards_dir: str | Path,
    out_dir: str | Path,
    sam_name: str = "tiny",
    checkpoint: str | Path | None = None,
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dtype: str = "float16",
) -> Path:
    """Embed every shard listed in ``shards_dir``'s manifest on an actor pool, then write the manifest; returns its path."""
    import ray

    if sam_name not in SAM_CONFIGS:
        raise ValueError(f"unknown SAM {sam_name!r}; known: {sorted(SAM_CONFIGS)}")
    storage_dtype(dtype)
    shards_dir, out = Path(shards_dir), Path(out_dir)
    frames_manifest = shards_dir / MANIFEST
    frame_rows, _ = read_manifest(frames_manifest)
    if not frame_rows:
        raise DataError(f"{frames_manifest}: lists no shards")
    out.mkdir(parents=True, exist_ok=True)
    memory = ray.cluster_resources().get("memory", 0.0)
    pool = plan_pool(len(frame_rows), cluster_cpus(), cluster_gpus(), memory, encoder_bytes(SAM_CONFIGS[sam_name], batch_size))
    print(f"{len(frame_rows)} frame shards -> {out}: SAM {sam_name}, {pool.actors} actors x {pool.threads} threads, {dtype}", flush=True)

    started = time.perf_counter()
    rows = [{"shard": row["shard"], "sha256": row["sha256"]} for row in frame_rows]
    embedder_args = {
        "shards_dir": str(shards_dir),
        "out_dir": str(out),
        "sam_name": sam_name,
        "checkpoint": None if checkpoint is None else str(checkpoint),
        "seed": seed,
        "batch_size": batch_size,
        "dtype": dtype,
        "pool": pool,
    }
    results = (
        ray.data.from_items(rows, override_num_blocks=len(rows))
        .map(
            ShardEmbedder,
            fn_constructor_kwargs=embedder_args,
            compute=ray.data.ActorPoolStrategy(size=pool.actors),
            num_cpus=pool.num_cpus,
            num_gpus=pool.num_gpus,
            memory=pool.memory or None,
        )
        .take_all()
    )
    wall = time.perf_counter() - started
    records = sorted((result["record"] for result in results), key=lambda record: record["shard"])
    columns = ("shard", "samples", "n_samples", "n_frames", "bytes", "sha256")
    metadata = {
        "stage": "embed",
        "identity": records[0]["identity"],
        "frames_manifest": {"path": str(frames_manifest), "sha256": sha256_file(frames_manifest)},
        "version": groprompt.__version__,
    }
    manifest = out / MANIFEST
    write_manifest(manifest, [{column: record[column] for column in columns} for record in records], metadata)
    print(f"wrote {manifest}: {summary(results, wall)}", flush=True)
    return manifest


def summary(results: list[dict[str, Any]], wall: float) -> str:
    """One line: shards computed and reused, frames, wall time, and the actors' encoding rate."""
    computed = [result for result in results if result["computed"]]
    frames = sum(result["record"]["n_frames"] for result in computed)
    busy = sum(result["seconds"] for result in computed)
    rate = f", {frames / busy:.1f} frames/s per actor while encoding" if busy > 0 else ""
    return (
        f"{len(results)} shards ({len(computed)} computed, {len(results) - len(computed)} reused), "
        f"{sum(result['record']['n_frames'] for result in results)} frames; "
        f"{frames} embedded in {wall:.1f} s wall ({frames / wall:.1f} frames/s, actor start-up included{rate})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", required=True, help="frame shard folder (holds manifest.parquet)")
    parser.add_argument("--out", required=True, help="embedding shard folder")
    parser.add_argument("--sam", default="tiny", choices=sorted(SAM_CONFIGS), help="SAM configuration")
    parser.add_argument("--checkpoint", default=None, help="SAM checkpoint (default: random weights from --seed)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights when there is no checkpoint")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="frames per encoder pass")
    parser.add_argument("--dtype", default="float16", choices=sorted(STORAGE_DTYPES), help="storage dtype")
    parser.add_argument("--address", default=None, help="Ray cluster address (default: $RAY_ADDRESS or a local Ray)")
    args = parser.parse_args(argv)
    init_ray(args.address)
    try:
        embed_shards(args.shards, args.out, args.sam, args.checkpoint, args.seed, args.batch_size, args.dtype)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
