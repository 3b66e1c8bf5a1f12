"""The embed stage: frozen SAM image embeddings of frame shards, on a Ray Data actor pool (atomic, resumable).

One frame shard becomes one embedding shard with the same sample keys; each actor loads the encoder once (with
``model.encoder_*``'s options) and streams its shards through it ``batch_size`` frames at a time, a loader thread
decoding the next batches while the encoder runs. A re-run recomputes only missing or stale shards.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from groprompt.cluster import cluster_cpus, cluster_gpus
from groprompt.config import Config
from groprompt.data.embeddings import MANIFEST, embed_shard, storage_dtype
from groprompt.data.manifest import read_manifest
from groprompt.data.stage_outputs import write_embedding_manifest
from groprompt.errors import ConfigError, DataError
from groprompt.files import Location, check_writable, location
from groprompt.models.encoder_options import EncoderOptions
from groprompt.models.sam import SAM_CONFIGS, FrozenSam, require_weights
from groprompt.stages.encoder_pool import PoolPlan, encoder_bytes, plan_pool, prepare_encoder_process


class ShardEmbedder:
    """A Ray Data actor: one frozen SAM encoder, loaded once, embedding one frame shard per row."""

    def __init__(
        self,
        shards_dir: str,
        out_dir: str,
        sam_name: str,
        checkpoint: str | None,
        seed: int,
        batch_size: int,
        dtype: str,
        pool: PoolPlan,
        options: EncoderOptions,
    ) -> None:
        prepare_encoder_process(pool.threads)
        device = "cuda" if pool.num_gpus else "cpu"
        self.sam = FrozenSam.from_name(sam_name, checkpoint, seed, options).to(device)
        self.shards_dir, self.out_dir = location(shards_dir), location(out_dir)
        self.batch_size, self.dtype = batch_size, dtype

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        start = time.perf_counter()
        record, computed = embed_shard(self.sam, self.shards_dir / row["shard"], row["sha256"], self.out_dir, self.batch_size, self.dtype)
        seconds = time.perf_counter() - start
        if computed:
            print(f"{record['shard']}: {record['n_frames']} frames in {seconds:.2f} s", flush=True)
        return {"record": record, "computed": computed, "seconds": seconds}


def embed_split(config: Config, split: str) -> Location:
    """Embed the frame shards of ``split`` (``<data.shards>/<split>``) into ``<data.embeddings>/<split>`` with ``config.model``'s SAM."""
    model, data = config.model, config.data
    require_weights(model.sam, model.sam_checkpoint, model.allow_random_weights)
    return embed_shards(
        location(data.shards) / split,
        location(data.embeddings) / split,
        model.sam,
        model.sam_checkpoint,
        model.sam_seed,
        data.embed_batch,
        data.embed_dtype,
        EncoderOptions.from_config(model),
    )


def embed_shards(
    shards_dir: str | Location,
    out_dir: str | Location,
    sam_name: str = "tiny",
    checkpoint: str | Path | None = None,
    seed: int = 0,
    batch_size: int = 4,
    dtype: str = "float16",
    options: EncoderOptions = EncoderOptions(),
) -> Location:
    """Embed every shard listed in ``shards_dir``'s manifest on an actor pool, then write the manifest; returns its path."""
    import ray

    if sam_name not in SAM_CONFIGS:
        raise ConfigError(f"model.sam: unknown SAM {sam_name!r}; known: {sorted(SAM_CONFIGS)}")
    storage_dtype(dtype)
    shards_dir, out = location(shards_dir), location(out_dir)
    frames_manifest = shards_dir / MANIFEST
    frame_rows, _ = read_manifest(frames_manifest)
    if not frame_rows:
        raise DataError(f"{frames_manifest}: lists no shards")
    check_writable(out)
    out.mkdir(parents=True, exist_ok=True)
    memory = ray.cluster_resources().get("memory", 0.0)
    pool = plan_pool(len(frame_rows), cluster_cpus(), cluster_gpus(), memory, encoder_bytes(SAM_CONFIGS[sam_name], batch_size))
    print(
        f"{len(frame_rows)} frame shards -> {out}: SAM {sam_name} ({options.describe()}), {pool.actors} actors x {pool.threads} threads, "
        f"stored as {dtype}",
        flush=True,
    )

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
        "options": options,
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
    manifest = write_embedding_manifest(out, frames_manifest, [result["record"] for result in results])
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
