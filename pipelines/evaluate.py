"""Evaluate referring segmentation over evaluation shards with Ray Data tasks, tracked in MLflow.

    python pipelines/evaluate.py --config conf/tiny.yaml --boxes model --checkpoint mlflow:<run_id> \\
        --segmentor grabcut --split valid --out work/eval/valid [--png-dir DIR] [--submission sub.zip]
    python pipelines/evaluate.py --config conf/tiny.yaml --boxes oracle --segmentor grabcut --split valid --out DIR

One Ray task per group of frame shards holding whole videos (with their embedding shards when the boxes or the
segmentor need them): for each referring expression, box source -> top box per frame -> segmentor -> J, F, box
IoU; then the benchmark's own protocol (README, "Evaluation protocols": A2D/JHMDB-Sentences per frame sample,
Ref-DAVIS17 per annotator, MeViS per expression from its PNGs, a Ref-YouTube-VOS or MeViS submission complete against
the split). Writes ``<out>/metrics.parquet`` (one row per expression) and ``<out>/summary.json``; logs both to MLflow.
"""

from __future__ import annotations

import argparse
import sys

from groprompt.config import Config
from groprompt.evaluation.box_sources import BOX_SOURCES
from groprompt.models.segmentors import SEGMENTORS
from groprompt.stages.evaluate import evaluate, format_summary
from groprompt.stages.runner import run_stage, stage_parser


def work(args: argparse.Namespace, config: Config) -> int:
    """Evaluate as the flags say; print the summary and where it went."""
    summary = evaluate(
        config,
        args.boxes,
        args.checkpoint,
        args.segmentor,
        args.split,
        args.out,
        png_dir=args.png_dir,
        submission=args.submission,
        run_id=args.run_id,
        track=not args.no_mlflow,
        run_name=args.run_name,
    )
    print(format_summary(summary))
    print(f"wrote {summary['metrics']}" + (f"; MLflow run {summary['run_id']}" if summary["run_id"] else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser(__doc__)
    parser.add_argument(
        "--boxes",
        required=True,
        choices=BOX_SOURCES,
        help="prompt boxes: the trained model, the ground truth (oracle), or a random object's ground truth (sentence-blind)",
    )
    parser.add_argument("--checkpoint", default=None, help="checkpoint folder or file, or mlflow:<run_id> (with --boxes model)")
    parser.add_argument("--segmentor", default="grabcut", choices=sorted(SEGMENTORS), help="box -> mask backend")
    parser.add_argument("--split", default=None, help="split to evaluate (default: data.val_split)")
    parser.add_argument("--out", required=True, help="folder for metrics.parquet and summary.json")
    parser.add_argument("--png-dir", default=None, help="also write DAVIS palette PNGs <dir>/<video>/<exp_id>/<frame>.png")
    parser.add_argument("--submission", default=None, help="also write the server's submission zip (Ref-YouTube-VOS, MeViS)")
    parser.add_argument("--run-id", default=None, help="log into this MLflow run (default: create one)")
    parser.add_argument("--run-name", default=None, help="name of the created MLflow run")
    parser.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
    return run_stage(parser, argv, work)


if __name__ == "__main__":
    sys.exit(main())
