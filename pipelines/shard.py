"""Shard a benchmark into WebDataset tars with a manifest (Ray Data; atomic and resumable).

    python pipelines/shard.py --format ref-davis17 --root ../shared/data/ref-davis-mini --out work/shards/davis
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

import groprompt
from groprompt.cluster import init_ray
from groprompt.data.formats import read_videos
from groprompt.data.manifest import MANIFEST, write_manifest
from groprompt.data.records import DataError
from groprompt.data.shards import ShardSettings, plan_shards, write_shard


def shard_dataset(
    format: str, root: str, split: str | None, out: str | Path, settings: ShardSettings, skip_bad: bool = False
) -> Path:
    """Plan shards in the driver, write them in parallel Ray Data tasks, then write the manifest."""
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
    records = [row["record"] for row in dataset.map(write, num_cpus=1).take_all()]
    records.sort(key=lambda record: record["shard"])
    rejected = [entry for record in records for entry in record["rejected"]]
    columns = ("shard", "samples", "n_samples", "n_frames", "bytes", "sha256")
    rows = [{column: record[column] for column in columns} for record in records]
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
    print(f"wrote {manifest}: {sum(r['n_samples'] for r in rows)} samples, {sum(r['n_frames'] for r in rows)} frames, {len(rejected)} rejected videos")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--format", required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("--split", default=None)
    parser.add_argument("--out", required=True)
    parser.add_argument("--window", type=int, default=ShardSettings.window, help="frames per sample")
    parser.add_argument("--max-side", type=int, default=ShardSettings.max_side, help="cap on the stored frames' longest side")
    parser.add_argument("--shard-mb", type=float, default=ShardSettings.shard_bytes / 2**20, help="target shard size")
    masks = parser.add_mutually_exclusive_group()
    masks.add_argument("--masks", dest="masks", action="store_true", default=None, help="evaluation shards (default unless split is train)")
    masks.add_argument("--no-masks", dest="masks", action="store_false", help="training shards: boxes only")
    parser.add_argument("--skip-bad", action="store_true", help="leave out unreadable videos, listing them as rejected")
    parser.add_argument("--address", default=None, help="Ray cluster address (default: $RAY_ADDRESS or a local Ray)")
    args = parser.parse_args(argv)
    with_masks = args.masks if args.masks is not None else (args.split or "") != "train"
    settings = ShardSettings(
        window=args.window, max_side=args.max_side, shard_bytes=int(args.shard_mb * 2**20), with_masks=with_masks
    )
    init_ray(args.address)
    try:
        shard_dataset(args.format, args.root, args.split, args.out, settings, skip_bad=args.skip_bad)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
