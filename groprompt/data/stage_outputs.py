"""What the shard and embed stages leave on disk: their manifests, and both stages' work for one split done in this
process without Ray (tests, benchmarks and small local runs; the stages write the same files in parallel on Ray)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import groprompt
from groprompt.data.embeddings import FrameEncoder, embed_shard
from groprompt.data.manifest import MANIFEST, read_manifest, write_manifest
from groprompt.data.records import Video
from groprompt.data.shards import ShardSettings, plan_shards, shard_videos, write_shard
from groprompt.files import Location, location, sha256_file

MANIFEST_COLUMNS = ("shard", "samples", "n_samples", "n_frames", "bytes", "sha256")


def rejected_videos(records: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The videos the shard records left out (``--skip-bad``), each with its reason, in shard order."""
    return [entry for record in records for entry in record["rejected"]]


def write_shard_manifest(
    out: Location, format: str, root: str | Path, videos: Sequence[Video], settings: ShardSettings, records: list[dict[str, Any]]
) -> Location:
    """The shard stage's manifest of ``records`` (one per written shard) in ``out``; returns its path."""
    metadata = {
        "stage": "shard",
        "format": format,
        "dataset": videos[0].dataset,
        "split": videos[0].split,
        "root": str(root),
        "settings": asdict(settings),
        "rejected": rejected_videos(records),
        "version": groprompt.__version__,
    }
    rows = sorted(({column: record[column] for column in MANIFEST_COLUMNS} for record in records), key=lambda row: row["shard"])
    write_manifest(out / MANIFEST, rows, metadata)
    return out / MANIFEST


def write_embedding_manifest(out: Location, frames_manifest: Location, records: list[dict[str, Any]]) -> Location:
    """The embed stage's manifest of ``records`` (one per embedding shard) in ``out``; returns its path."""
    metadata = {
        "stage": "embed",
        "identity": records[0]["identity"],
        "frames_manifest": {"path": str(frames_manifest), "sha256": sha256_file(frames_manifest)},
        "version": groprompt.__version__,
    }
    rows = sorted(({column: record[column] for column in MANIFEST_COLUMNS} for record in records), key=lambda row: row["shard"])
    write_manifest(out / MANIFEST, rows, metadata)
    return out / MANIFEST


def shard_here(format: str, root: str | Path, split: str, out: str | Location, settings: ShardSettings) -> Location:
    """The shard stage's work for one split, in this process; returns the manifest's path."""
    videos = shard_videos(format, root, split)
    out = location(out)
    out.mkdir(parents=True, exist_ok=True)
    return write_shard_manifest(
        out, format, root, videos, settings, [write_shard(plan, out, settings) for plan in plan_shards(videos, settings)]
    )


def embed_here(
    shards_dir: str | Location, out: str | Location, sam: FrameEncoder, batch_size: int = 16, dtype: str = "float16"
) -> Location:
    """The embed stage's work for the frame shards of ``shards_dir``, in this process; returns the manifest's path."""
    shards_dir, out = location(shards_dir), location(out)
    rows, _ = read_manifest(shards_dir / MANIFEST)
    out.mkdir(parents=True, exist_ok=True)
    records = [embed_shard(sam, shards_dir / row["shard"], row["sha256"], out, batch_size, dtype)[0] for row in rows]
    return write_embedding_manifest(out, shards_dir / MANIFEST, records)
