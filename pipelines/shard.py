"""Shard a benchmark split into WebDataset tars with a manifest (Ray Data; atomic and resumable).

    python pipelines/shard.py --config conf/data/ref-davis17.yaml --split valid data.root=../shared/data/ref-davis-mini

Reads ``data.format`` and ``data.root``; writes ``<data.shards>/<split>`` with ``data.window`` frames per sample,
frames stored at most ``data.max_side`` pixels, shards of about ``data.shard_bytes``. Evaluation shards carry
masks; training shards (``data.split``) carry boxes only.
"""

from __future__ import annotations

import sys

from groprompt.stages.runner import run_stage, stage_parser
from groprompt.stages.shard import shard_split


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser(__doc__)
    parser.add_argument("--split", required=True, help="the split to shard (e.g. train, valid, train-fit, train-holdout)")
    masks = parser.add_mutually_exclusive_group()
    masks.add_argument(
        "--masks", dest="masks", action="store_true", default=None, help="evaluation shards (default unless the split is data.split)"
    )
    masks.add_argument("--no-masks", dest="masks", action="store_false", help="training shards: boxes only")
    parser.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave out bad videos, each named with its reason on the terminal and under 'rejected' in the manifest's metadata",
    )
    return run_stage(parser, argv, lambda args, config: shard_split(config, args.split, args.masks, args.skip_bad))


if __name__ == "__main__":
    sys.exit(main())
