"""Batch referring segmentation of a video archive on a Ray Data actor pool (streamed, resumable).

    python pipelines/infer.py --config conf/tiny.yaml --videos videos/ --queries queries.csv --out work/infer --random-model
    python pipelines/infer.py --config conf/base.yaml --videos videos/ --queries queries.csv --out work/infer
        --checkpoint mlflow:<run_id> [--segmentor sam|sam-hq|sam2|grabcut|box] [--png] [--overlay gif|mp4] model.sam_checkpoint=sam.pth

``--videos`` is a folder of video files (MP4 and whatever else PyAV reads), frame folders (JPEG/PNG) and/or tars of
video files (WebDataset style), a ``.txt`` list of paths, or several paths; any of them may be a bucket URI
(``s3://bucket/prefix``), as may ``--queries``, ``--out`` and ``--checkpoint``. ``--queries`` is a CSV (``video,query``) or JSONL
(``{"video": ..., "query": ...}``); ``video`` names a file by stem, name or path, or a folder. ``--checkpoint`` is a training
checkpoint folder, a checkpoint file or ``mlflow:<run_id>``; ``--random-model`` is an UNTRAINED model (smoke tests).

Each video is one row of a Ray Data pipeline whose actors (one per logical CPU, at most one per video) hold the
frozen SAM, the text encoder, the trained proposal generator and the segmentor, and stream the video's frames:
memory does not grow with the video's length. Outputs under ``--out``: ``masks/<video>.parquet``, ``png/``,
``overlays/``, ``errors.parquet`` (video, query, reason: unreadable videos, queries naming a missing video, empty
queries), ``manifest.parquet`` (one row per video) and ``summary.json``. A re-run skips every video whose parquet
file verifies. Exit code 0 when every video and query succeeded, 1 when some failed or were refused (listed in
``errors.parquet``) or none was processed, 2 for a user error.
"""

from __future__ import annotations

import argparse
import sys

from groprompt.config import Config
from groprompt.stages.infer import infer, infer_parser
from groprompt.stages.runner import run_stage


def work(args: argparse.Namespace, config: Config) -> int:
    """Run the stage; 0 when every video and query is segmented (now or before), 1 when any video failed, any input
    was refused or none was processed (one line on stderr says so and names the first reason)."""
    videos = args.videos[0] if len(args.videos) == 1 else args.videos
    summary = infer(
        config,
        videos,
        args.queries,
        args.out,
        args.checkpoint,
        args.random_model,
        args.segmentor,
        args.png,
        args.overlay,
        args.encode_batch,
    )
    if summary["done"] + summary["skipped"] == 0:
        print(f"incomplete: no video was processed; {summary['errors']} input errors in {summary['errors_table']}", file=sys.stderr)
        return 1
    if summary["failed"] or summary["errors"]:
        print(
            f"incomplete: {summary['failed']} videos failed, {summary['errors']} input errors in {summary['errors_table']}; "
            f"first: {summary['first_error']}",
            file=sys.stderr,
        )
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_stage(infer_parser(__doc__), argv, work)


if __name__ == "__main__":
    sys.exit(main())
