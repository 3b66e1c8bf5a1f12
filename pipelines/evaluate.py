"""Evaluate referring segmentation over evaluation shards with Ray Data tasks, tracked in MLflow.

    python pipelines/evaluate.py --config conf/tiny.yaml --boxes model --checkpoint mlflow:<run_id> \\
        --segmentor grabcut --split valid --out work/eval/valid [--png-dir DIR] [--submission sub.zip]
    python pipelines/evaluate.py --config conf/tiny.yaml --boxes oracle --segmentor grabcut --split valid --out DIR

One Ray task per frame shard (with its embedding shard when the boxes or the segmentor need them): for each
referring expression, box source -> top box per frame -> segmentor -> J, F, box IoU. Writes
``<out>/metrics.parquet`` (one row per expression) and ``<out>/summary.json``; logs both to MLflow.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from groprompt.config import Config, load_config, with_absolute_paths
from groprompt.data.manifest import MANIFEST, read_manifest
from groprompt.data.records import DataError
from groprompt.evaluation import (
    BOX_SOURCES,
    ModelBoxes,
    OracleBoxes,
    evaluate_shard,
    flat_metrics,
    load_state_dict,
    merge_partials,
    submission_masks,
    summarize,
)
from groprompt.outputs import write_submission_zip
from groprompt.segmentors import SEGMENTORS, build_segmentor
from groprompt.tracking import resolve_tracking_uri, run_status, start_run, with_tracking_uri

GRABCUT_NOTE = (
    "segmentor grabcut: OpenCV GrabCut stands in for SAM because no pretrained SAM checkpoint is available; "
    "masks are GrabCut's from each prompt box, not SAM's"
)


def resolve_model(checkpoint: str, config: Config) -> tuple[dict[str, Any], Config]:
    """Trained weights and the configuration whose model section built them.

    ``mlflow:<run_id>`` loads the model logged by that training run (and its model configuration); anything else
    is a checkpoint folder or file, built with ``config.model``.
    """
    if checkpoint.startswith("mlflow:"):
        from groprompt.config import replace, to_dict
        from groprompt.tracking import load_logged_model

        state, logged = load_logged_model(checkpoint.removeprefix("mlflow:"), config.runtime.tracking_uri)
        return state, replace(config, model=to_dict(logged)["model"])
    return load_state_dict(checkpoint), config


def _shard_rows(config: Config, split: str, need_embeddings: bool) -> list[dict[str, Any]]:
    """One row per frame shard of the split: its path, and its embedding shard's when needed (checked)."""
    if need_embeddings:
        from groprompt.data.clips import shard_pairs
        from groprompt.models.sam import FrozenSam

        sam = FrozenSam.from_name(config.model.sam, checkpoint=config.model.sam_checkpoint, seed=config.model.sam_seed)
        return [{"frames": str(p.frames), "embeddings": str(p.embeddings)} for p in shard_pairs(config.data, split, sam)]
    frames_dir = Path(config.data.shards) / split
    rows, _ = read_manifest(frames_dir / MANIFEST)
    return [{"frames": str(frames_dir / row["shard"]), "embeddings": None} for row in rows]


def _evaluate_row(row: dict[str, Any], settings: dict[str, Any]) -> list[dict[str, Any]]:
    """The work of one Ray task: build the box source and the segmentor, score one shard."""
    import ray
    import torch

    torch.set_num_threads(1)
    model_config = settings["model_config"]
    frozen = None
    if settings["boxes"] == "model":
        box_source = ModelBoxes.load(model_config, ray.get(settings["state_ref"]))
        frozen = box_source.frozen
    else:
        box_source = OracleBoxes()
    sam = None
    if settings["segmentor"] == "sam":
        from groprompt.models.sam import FrozenSam

        sam = frozen.sam if frozen is not None else FrozenSam.from_name(model_config.sam, model_config.sam_checkpoint, model_config.sam_seed)
    segmentor = build_segmentor(settings["segmentor"], sam=sam)
    started = time.perf_counter()
    partials = evaluate_shard(row["frames"], row["embeddings"], box_source, segmentor, settings["png_dir"])
    print(f"{Path(row['frames']).name}: {len(partials)} expression samples in {time.perf_counter() - started:.1f} s", flush=True)
    return partials


def evaluate(
    config: Config,
    boxes: str,
    checkpoint: str | None = None,
    segmentor: str = "grabcut",
    split: str | None = None,
    out_dir: str | Path = "work/eval",
    png_dir: str | Path | None = None,
    submission: str | Path | None = None,
    run_id: str | None = None,
    track: bool = True,
    run_name: str | None = None,
) -> dict[str, Any]:
    """Evaluate one box source + segmentor on a split (Ray must be initialised); returns the summary.

    The summary (``groprompt.evaluation.summarize``) also carries ``run_id`` (None without tracking),
    ``metrics`` (the parquet path) and ``seconds``. ``run_id`` logs into an existing MLflow run; otherwise
    ``track`` creates one.
    """
    import ray

    if boxes not in BOX_SOURCES:
        raise ValueError(f"unknown box source {boxes!r}; known: {list(BOX_SOURCES)}")
    if segmentor not in SEGMENTORS:
        raise ValueError(f"unknown segmentor {segmentor!r}; known: {sorted(SEGMENTORS)}")
    if boxes == "model" and not checkpoint:
        raise ValueError("--boxes model needs --checkpoint (a folder, a file, or mlflow:<run_id>)")
    config = with_tracking_uri(config)
    split = split or config.data.val_split
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if submission is not None and png_dir is None:
        png_dir = out / "pngs"
    if png_dir is not None:
        png_dir = Path(png_dir).resolve()
    if segmentor == "grabcut":
        print(GRABCUT_NOTE, flush=True)
    elif segmentor == "sam" and not config.model.sam_checkpoint:
        print(f"segmentor sam: SAM {config.model.sam} has random weights (no checkpoint); its masks are not meaningful", flush=True)

    state = None
    if boxes == "model":
        state, config = resolve_model(str(checkpoint), config)
    need_embeddings = boxes == "model" or segmentor == "sam"
    rows = _shard_rows(config, split, need_embeddings)
    if not rows:
        raise DataError(f"{Path(config.data.shards) / split}: lists no shards")
    print(f"evaluating {len(rows)} shards of split {split}: boxes {boxes}, segmentor {segmentor}", flush=True)

    started = time.perf_counter()
    settings = {
        "boxes": boxes,
        "segmentor": segmentor,
        "model_config": config.model,
        "state_ref": ray.put(state) if state is not None else None,
        "png_dir": str(png_dir) if png_dir is not None else None,
    }
    results = (
        ray.data.from_items(rows, override_num_blocks=len(rows))
        .flat_map(_evaluate_row, fn_kwargs={"settings": settings}, num_cpus=1)
        .take_all()
    )
    table = merge_partials(results)
    summary = summarize(table)
    metrics_path = out / "metrics.parquet"
    temporary = out / ".metrics.parquet.tmp"
    table.to_parquet(temporary, index=False)
    os.replace(temporary, metrics_path)
    if submission is not None:
        count = write_submission_zip(submission, submission_masks(png_dir))
        print(f"wrote {submission}: {count} masks", flush=True)
    summary["seconds"] = time.perf_counter() - started
    summary["metrics"] = str(metrics_path)
    summary["boxes"], summary["segmentor"], summary["split"] = boxes, segmentor, split
    summary["checkpoint"] = checkpoint

    own_run = run_id is None and track
    if own_run:
        run_id = start_run(config, run_name or f"evaluate-{boxes}-{segmentor}", tags={"stage": "evaluate"})
    summary["run_id"] = run_id
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    if own_run:
        with run_status(run_id, config.runtime.tracking_uri):
            log_evaluation(run_id, summary, metrics_path, out / "summary.json", config.runtime.tracking_uri)
    elif run_id is not None:
        log_evaluation(run_id, summary, metrics_path, out / "summary.json", config.runtime.tracking_uri)
    return summary


def log_evaluation(run_id: str, summary: dict[str, Any], metrics_path: Path, summary_path: Path, tracking_uri: str | None) -> None:
    """Log the summary metrics, the evaluation settings, the per-expression parquet and the summary JSON."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    client = MlflowClient(resolve_tracking_uri(tracking_uri))
    now = int(time.time() * 1000)
    metrics = [Metric(f"eval/{k}", v, now, 0) for k, v in flat_metrics(summary).items()]
    params = [Param(f"eval.{k}", str(summary[k])) for k in ("boxes", "segmentor", "split", "checkpoint")]
    for start in range(0, len(metrics), 100):
        client.log_batch(run_id, metrics=metrics[start : start + 100])
    try:
        client.log_batch(run_id, params=params)
    except Exception:  # the run already holds other values for these params (a second evaluation into it)
        pass
    client.log_artifact(run_id, str(metrics_path), artifact_path="evaluation")
    client.log_artifact(run_id, str(summary_path), artifact_path="evaluation")


def format_summary(summary: dict[str, Any]) -> str:
    """One line per group: overall, IoU metrics when present, then per expression type."""

    def pct(value: Any) -> str:
        return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}"

    lines = [
        f"{summary['n_expressions']} expressions, {summary['n_frames']} frames: J&F {pct(summary['JF'])}, "
        f"J {pct(summary['J'])}, F {pct(summary['F'])}, box IoU {pct(summary['box_iou'])}"
    ]
    if "overall_iou" in summary:
        precision = ", ".join(f"{k} {pct(v)}" for k, v in summary.items() if k.startswith("P@"))
        lines.append(f"overall IoU {pct(summary['overall_iou'])}, mean IoU {pct(summary['mean_iou'])}, {precision}")
    for kind, values in summary.get("by_kind", {}).items():
        lines.append(f"  {kind}: {values['n_expressions']} expressions, J&F {pct(values['JF'])}, box IoU {pct(values['box_iou'])}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, Config]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", action="append", default=[], help="YAML file(s), merged in order")
    parser.add_argument("--boxes", required=True, choices=BOX_SOURCES, help="prompt boxes: the trained model or the ground truth")
    parser.add_argument("--checkpoint", default=None, help="checkpoint folder or file, or mlflow:<run_id> (with --boxes model)")
    parser.add_argument("--segmentor", default="grabcut", choices=sorted(SEGMENTORS), help="box -> mask backend")
    parser.add_argument("--split", default=None, help="split to evaluate (default: data.val_split)")
    parser.add_argument("--out", required=True, help="folder for metrics.parquet and summary.json")
    parser.add_argument("--png-dir", default=None, help="also write DAVIS palette PNGs <dir>/<video>/<exp_id>/<frame>.png")
    parser.add_argument("--submission", default=None, help="also write a Ref-YouTube-VOS submission zip")
    parser.add_argument("--run-id", default=None, help="log into this MLflow run (default: create one)")
    parser.add_argument("--run-name", default=None, help="name of the created MLflow run")
    parser.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
    parser.add_argument("--address", default=None, help="Ray cluster (default: $RAY_ADDRESS, else a local Ray)")
    parser.add_argument("overrides", nargs="*", help="key.sub=value")
    args = parser.parse_args(argv)
    return args, with_absolute_paths(load_config(args.config, args.overrides))


def main(argv: list[str] | None = None) -> int:
    from groprompt.cluster import init_ray

    args, config = parse_args(argv)
    init_ray(args.address or config.runtime.ray_address)
    try:
        summary = evaluate(
            config, args.boxes, args.checkpoint, args.segmentor, args.split, args.out,
            png_dir=args.png_dir, submission=args.submission, run_id=args.run_id,
            track=not args.no_mlflow, run_name=args.run_name,
        )
    except (DataError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_summary(summary))
    print(f"wrote {summary['metrics']}" + (f"; MLflow run {summary['run_id']}" if summary["run_id"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
