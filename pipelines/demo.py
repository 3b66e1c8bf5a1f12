"""The embedded-default demo: the whole GroPrompt pipeline on one machine, local Ray, MLflow in SQLite.

    bash scripts/demo.sh            # or: .venv/bin/python pipelines/demo.py [--config conf/demo.yaml] [key=value ...]

Stages: generate RefShapes -> shard -> embed (tiny SAM, random weights) -> train L_box only and
L_box + L_contra on 2 workers -> sweep lambda_f x lambda_v -> evaluate -> ablation table.
Every stage's outcome is recorded under ``<work>/demo/``; a re-run reuses completed stages.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from groprompt.config import Config
from groprompt.files import absolute_location
from groprompt.stages.demo import run_demo
from groprompt.stages.runner import run_stage, stage_parser
from groprompt.tracking import resolve_tracking_uri

CONF = Path(__file__).resolve().parents[1] / "conf"


def report(args: argparse.Namespace, config: Config) -> None:
    """Run the demo and print the ablation table and how to browse the runs."""
    sweep_config = None if args.sweep == "none" else Path(args.sweep)
    print("\n" + run_demo(config, absolute_location(args.work), args.videos, args.frames, sweep_config, args.test_fraction))
    uri = resolve_tracking_uri(config.runtime.tracking_uri)
    print(
        f"Open the MLflow UI on these runs:\n  .venv/bin/mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000\n"
        "then browse http://127.0.0.1:5000"
    )


def main(argv: list[str] | None = None) -> int:
    parser = stage_parser(__doc__)
    parser.add_argument("--videos", type=int, default=140, help="RefShapes videos to generate")
    parser.add_argument("--test-fraction", type=float, default=0.15, help="share of them in the split the table reports")
    parser.add_argument("--frames", type=int, default=8, help="frames per video")
    parser.add_argument("--sweep", default=str(CONF / "sweep" / "demo.yaml"), help="sweep file, or 'none'")
    parser.add_argument("--work", default="work", help="folder or bucket URI for the stage records, evaluations, overlays and table")
    return run_stage(parser, argv, report, default_configs=(CONF / "demo.yaml",))


if __name__ == "__main__":
    sys.exit(main())
