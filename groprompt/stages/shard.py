"""The shard stage: a benchmark split into WebDataset tars with a manifest, written by Ray Data tasks."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import groprompt
from groprompt.config import Config, DataConfig
from groprompt.data.formats import read_videos
from groprompt.data.manifest import MANIFEST, write_manifest
from groprompt.data.shards import ShardSettings, plan_shards, write_shard
from groprompt.errors import DataError

MANIFEST_COLUMNS = ("shard", "samples", "n_samples", "n_frames", "bytes", "sha256")


def shard_settings(data: DataConfig, with_masks: bool) -> ShardSettings:
    """The shard layout that ``data`` asks for; masks only in evaluation shards."""
    return ShardSettings(window=data.window, max_side=data.max_side, shard_bytes=data.shard_bytes, with_masks=with_masks)


def shard_split(config: Config, split: str, with_masks: bool | None = None, skip_bad: bool = False) -> Path:
    """Shard ``split`` of ``config.data`` into ``<data.shards>/<split>``; masks by default except for the training split."""
    masks = split != config.data.split if with_masks is None else with_masks
    out = Path(config.data.shards) / split
    return shard_dataset(config.data.format, config.data.root, split, out, shard_settings(config.data, masks), skip_bad)


def shard_dataset(format: str, root: str, split: str | None, out: str | Path, settings: ShardSettings, skip_bad: bool = False) -> Path:
    """Plan shards in the driver, write them in parallel Ray Data tasks, then write the manifest; returns its path."""
    import ray

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    videos = list(read_videos(format, root, split, with_boxes=False))
    if not videos:
        raise DataError(f"{root}: no videos for format {format}, split {split}")
    plans = plan_shards(videos, settings)
    print(f"{len(videos)} videos -> {len(plans)} shards in {out}", flush=True)

    def write(row: dict) -> dict:  # the plans travel once, with the function
        return {"record": write_shard(plans[row["index"]], out, settings, skip_bad=skip_bad)}

    dataset = ray.data.from_items([{"index": plan.index} for plan in plans], override_num_blocks=len(plans))
    records = sorted((row["record"] for row in dataset.map(write, num_cpus=1).take_all()), key=lambda record: record["shard"])
    rejected = [entry for record in records for entry in record["rejected"]]
    rows = [{column: record[column] for column in MANIFEST_COLUMNS} for record in records]
    metadata = {
        "stage": "shard",
        "format": format,
        "dataset": videos[0].dataset,
        "split": videos[0].split,
        "root": str(root),
        "settings": asdict(settings),
        "rejected": rejected,
        "version": groprompt.__version__,
    }
    manifest = out / MANIFEST
    write_manifest(manifest, rows, metadata)
    samples, frames = sum(r["n_samples"] for r in rows), sum(r["n_frames"] for r in rows)
    print(f"wrote {manifest}: {samples} samples, {frames} frames, {len(rejected)} rejected videos", flush=True)
    return manifest
