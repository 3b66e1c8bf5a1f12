"""Precompute frozen SAM image embeddings of frame shards on a Ray Data actor pool (atomic and resumable).

    python pipelines/embed.py --config conf/base.yaml --split train model.sam_checkpoint=/models/sam_vit_b_01ec64.pth

Reads ``<data.shards>/<split>`` and writes ``<data.embeddings>/<split>`` with the SAM of ``model.sam`` (weights
from ``model.sam_checkpoint``, else random from ``model.sam_seed``), ``data.embed_batch`` frames per encoder
pass, stored as ``data.embed_dtype``. A re-run recomputes only missing or stale shards.
"""

from __future__ import annotations

import sys

from groprompt.stages.embed import embed_split
from groprompt.stages.runner import run_stage, stage_parser


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser(__doc__)
    parser.add_argument("--split", required=True, help="the split whose frame shards to embed")
    return run_stage(parser, argv, lambda args, config: embed_split(config, args.split))


if __name__ == "__main__":
    sys.exit(main())
