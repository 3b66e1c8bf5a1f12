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
from groprompt.stages.evaluate import evaluate, evaluate_parser, format_summary
from groprompt.stages.runner import run_stage


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
    return run_stage(evaluate_parser(__doc__), argv, work)


if __name__ == "__main__":
    sys.exit(main())
