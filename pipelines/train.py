"""Train the GroPrompt proposal generator with Ray Train (DDP: gloo on CPU, NCCL on GPU), tracked in MLflow.

    ray job submit --working-dir . -- python pipelines/train.py --config conf/tiny.yaml train.epochs=6
    python pipelines/train.py --config conf/tiny.yaml            # starts a local Ray when none is running

Workers read frame-shard metadata and cached SAM embeddings only. A run restarted with the same
``train.storage_path`` and ``train.name`` resumes from its last checkpoint.
"""

from __future__ import annotations

import os
import sys

from groprompt.stages.runner import run_stage, stage_parser
from groprompt.stages.train import format_outcome, train


def main(argv: list[str] | None = None) -> int:
    return run_stage(stage_parser(__doc__), argv, lambda args, config: print(format_outcome(train(config))))


if __name__ == "__main__":
    os.environ.setdefault("RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS", "0")
    sys.exit(main())
