"""The shard stage: a benchmark split into WebDataset tars with a manifest, written by Ray Data tasks."""

from __future__ import annotations

from typing import Any

from groprompt.config import Config, DataConfig
from groprompt.data.shards import ShardSettings, plan_shards, shard_videos, write_shard
from groprompt.data.stage_outputs import rejected_videos, write_shard_manifest
from groprompt.files import Location, check_writable, location


def shard_settings(data: DataConfig, with_masks: bool) -> ShardSettings:
    """The shard layout that ``data`` asks for; masks only in evaluation shards."""
    return ShardSettings(window=data.window, max_side=data.max_side, shard_bytes=data.shard_bytes, with_masks=with_masks)


def shard_split(config: Config, split: str, with_masks: bool | None = None, skip_bad: bool = False) -> Location:
    """Shard ``split`` of ``config.data`` into ``<data.shards>/<split>``; masks by default except for the training split."""
    masks = split != config.data.split if with_masks is None else with_masks
    out = location(config.data.shards) / split
    return shard_dataset(config.data.format, config.data.root, split, out, shard_settings(config.data, masks), skip_bad)


def shard_dataset(
    format: str, root: str, split: str | None, out: str | Location, settings: ShardSettings, skip_bad: bool = False
) -> Location:
    """Plan shards in the driver, write them in parallel Ray Data tasks, then write the manifest; returns its path."""
    import ray

    out = location(out)
    check_writable(out)
    out.mkdir(parents=True, exist_ok=True)
    videos = shard_videos(format, root, split)
    plans = plan_shards(videos, settings)
    print(f"{len(videos)} videos -> {len(plans)} shards in {out}", flush=True)

    def write(row: dict) -> dict:  # the plans travel once, with the function
        return {"record": write_shard(plans[row["index"]], out, settings, skip_bad=skip_bad)}

    dataset = ray.data.from_items([{"index": plan.index} for plan in plans], override_num_blocks=len(plans))
    records = sorted((row["record"] for row in dataset.map(write, num_cpus=1).take_all()), key=lambda record: record["shard"])
    manifest = write_shard_manifest(out, format, root, videos, settings, records)
    print(written_report(manifest, records), flush=True)
    return manifest


def written_report(manifest: Location, records: list[dict[str, Any]]) -> str:
    """What the stage prints once ``manifest`` is written: one line per video left out (``--skip-bad``) with its
    reason, then the counts and, when videos were left out, where the list of them is kept."""
    rejected = rejected_videos(records)
    samples, frames = sum(r["n_samples"] for r in records), sum(r["n_frames"] for r in records)
    kept = " (listed with their reasons under 'rejected' in its metadata)" if rejected else ""
    lines = [f"skipped video {entry['video']}: {entry['reason']}" for entry in rejected]
    return "\n".join([*lines, f"wrote {manifest}: {samples} samples, {frames} frames, {len(rejected)} rejected videos{kept}"])
