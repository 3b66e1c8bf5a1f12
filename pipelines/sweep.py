"""Sweep the contrastive loss weights lambda_f and lambda_v with Ray Tune (ASHA on val_box_iou), in MLflow.

    python pipelines/sweep.py --config conf/tiny.yaml --config conf/sweep/grid.yaml

Each trial trains on one worker (trials run side by side, as many as the cluster's CPUs allow) and logs a
child run under one parent run; the parent gets a results table, a heatmap, and the best configuration.
"""

from __future__ import annotations

import sys

from groprompt.stages.runner import run_stage, stage_parser
from groprompt.stages.sweep import format_rows, sweep


def main(argv: list[str] | None = None) -> int:
    return run_stage(stage_parser(__doc__), argv, lambda args, config: print("\n".join(format_rows(sweep(config)))))


if __name__ == "__main__":
    sys.exit(main())
