"""The ``groprompt`` command line: one sub-command per user task, each a thin call into the library."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from groprompt.errors import DataError, UserError
from groprompt.stages.runner import USER_ERROR_EXIT, describe, exit_code_of


def _eval_masks(args: argparse.Namespace) -> int:
    if args.task == "mevis":
        return _eval_mevis(args)
    from groprompt.evaluation.mask_folders import evaluate_folders, format_mean_row, write_csv

    scores = evaluate_folders(args.gt, args.pred, task=args.task)
    if args.csv:
        write_csv(scores, args.csv)
    print(format_mean_row(scores))
    return 0


def _eval_mevis(args: argparse.Namespace) -> int:
    from groprompt.data.formats import read_videos
    from groprompt.evaluation.mevis import format_means, score_videos, write_csv

    gt = Path(args.gt).resolve()  # <root>/<split>
    scores = score_videos(read_videos("mevis", gt.parent, gt.name, with_boxes=False), args.pred)
    if args.csv:
        write_csv(scores, args.csv)
    print(format_means(scores))
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from groprompt.data.formats import dataset_summary

    if args.check:
        return _check(args)
    summary = dataset_summary(args.format, args.root, args.split)
    print(json.dumps(summary) if args.json else "\n".join(f"{k}: {v}" for k, v in summary.items()))
    return 0


def _check(args: argparse.Namespace) -> int:
    """Every refusal the shard stage would make, one ``error:`` line each on stderr, then a count; writes nothing.
    Exit code 2 when any video is refused (a broken annotation file stops the check as it stops the stage)."""
    from groprompt.data.shards import shard_refusals, shard_videos

    videos = shard_videos(args.format, args.root, args.split)
    refused = 0
    for error in shard_refusals(videos):
        print(f"error: {describe(error)}", file=sys.stderr, flush=True)
        refused += 1
    print(f"{args.root}: {len(videos)} videos of split {videos[0].split} checked, {refused} refused by the shard stage")
    return USER_ERROR_EXIT if refused else 0


def _make_refshapes(args: argparse.Namespace) -> int:
    from groprompt.data.refshapes import RefShapesSpec, write_refshapes

    spec = RefShapesSpec(
        videos=args.videos,
        frames=args.frames,
        size=args.size,
        seed=args.seed,
        multi_object_share=args.multi_object_share,
        leaves_frame_share=args.leaves_frame_share,
    )
    write_refshapes(args.out, spec, valid_fraction=args.valid_fraction)
    print(f"wrote RefShapes to {args.out}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from groprompt.evaluation.report import write_report

    rows = [_split_row(item) for item in args.row]
    results = {name: _read_summary(path) for name, path in rows}
    path = write_report(args.out, results, args.run_id, args.tracking_uri)
    print(path.read_text())
    return 0


def _split_row(item: str) -> tuple[str, str]:
    """``NAME=PATH`` as (name, path); the name may hold ``=``, the path may not."""
    name, sep, path = item.rpartition("=")
    if not sep or not name:
        raise UserError(f"--row {item!r}: expected NAME=PATH")
    return name, path


def _read_summary(path: str) -> dict[str, Any]:
    """An evaluation ``summary.json``; DataError when it is not JSON."""
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not a JSON evaluation summary: {error}") from error


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command."""
    parser = argparse.ArgumentParser(prog="groprompt", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("eval-masks", help="J, F and J&F of DAVIS-layout palette PNG folders, or of MeViS predictions")
    p.add_argument("--gt", required=True, help="ground truth: <sequence>/<frame>.png; for mevis the split folder <root>/<split>")
    p.add_argument("--pred", required=True, help="predictions in the same layout; for mevis <video>/<exp_id>/<frame>.png")
    p.add_argument("--csv", help="write per-sequence scores here (mevis: per expression, columns video,exp_id,J,F)")
    p.add_argument(
        "--task",
        default="semi-supervised",
        choices=("semi-supervised", "unsupervised", "mevis"),
        help="semi-supervised: match object ids; unsupervised: davis2017-evaluation's Hungarian matching on mean J&F; "
        "mevis: henghuiding/MeViS tools/eval_mevis.py, per expression",
    )
    p.set_defaults(run=_eval_masks)

    p = commands.add_parser("inspect", help="count videos, expressions and frames of a benchmark, or check it for the shard stage")
    p.add_argument("format", help="ref-youtube-vos | ref-davis17 | a2d-sentences | jhmdb-sentences | mevis | refshapes")
    p.add_argument("root", help="the dataset folder (or annotation file for annotation-only counts)")
    p.add_argument("--split", default=None, help="default: the benchmark's evaluation split")
    output = p.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print JSON")
    output.add_argument(
        "--check",
        action="store_true",
        help="decode every frame and annotation as the shard stage does, and list each video it would refuse (one line "
        "each, exit code 2 if any); writes nothing",
    )
    p.set_defaults(run=_inspect)

    p = commands.add_parser("make-refshapes", help="generate the RefShapes synthetic benchmark")
    p.add_argument("--out", required=True)
    p.add_argument("--videos", type=int, default=40)
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--valid-fraction", type=float, default=0.25)
    p.add_argument("--multi-object-share", type=float, default=0.0, help="chance of a sentence about several objects per video")
    p.add_argument("--leaves-frame-share", type=float, default=0.0, help="chance of a sentence about an object leaving the frame")
    p.set_defaults(run=_make_refshapes)

    p = commands.add_parser("report", help="the loss ablation report (cf. GroPrompt Table 6) of evaluation summaries")
    p.add_argument("--row", action="append", required=True, metavar="NAME=PATH", help="a row's name and summary.json, in display order")
    p.add_argument("--out", required=True, help="Markdown file to write")
    p.add_argument("--run-id", default=None, help="MLflow run to log the report to")
    p.add_argument("--tracking-uri", default=None, help="default: $MLFLOW_TRACKING_URI, else ./mlflow.db")
    p.set_defaults(run=_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    return exit_code_of(lambda: args.run(args))


if __name__ == "__main__":
    sys.exit(main())
