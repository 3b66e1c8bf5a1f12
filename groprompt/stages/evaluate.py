"""The evaluate stage: one Ray Data task per group of frame shards holding whole videos scores a box source +
segmentor; the driver merges the partial rows, writes ``<out>/metrics.parquet`` (one row per expression) and
``<out>/summary.json``, adds the benchmark's own protocol (Ref-DAVIS17: per annotator; A2D/JHMDB-Sentences: per
frame sample; MeViS: per expression from its PNGs), and logs both to MLflow (``groprompt.evaluation`` describes the
protocols)."""

from __future__ import annotations

import argparse
import math
import time
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from groprompt.checkpoints import TrainedWeights, load_trained, with_model_of
from groprompt.config import Config, ModelConfig
from groprompt.data.formats import read_videos
from groprompt.data.formats.mevis import split_has_masks
from groprompt.data.manifest import MANIFEST, read_manifest
from groprompt.data.shards import check_shard
from groprompt.errors import ConfigError, DataError
from groprompt.evaluation.aggregate import merge_partials, summarize
from groprompt.evaluation.box_sources import BOX_SOURCES, REFERENCE_SOURCES, BoxSource, ModelBoxes
from groprompt.evaluation.mevis import protocol_means, score_videos
from groprompt.evaluation.mlflow_logging import eval_params, log_evaluation, unlogged_params
from groprompt.evaluation.ref_davis import score_annotators
from groprompt.evaluation.scoring import evaluate_shards, whole_video_groups
from groprompt.evaluation.submission import submission_layout, submission_masks, submission_members
from groprompt.files import Location, atomic_path, local_file, location, output_folder, write_json_atomic
from groprompt.mask_io import write_submission_zip
from groprompt.models.frozen import frozen_sam
from groprompt.models.segmentors import SEGMENTORS, Segmentor, VideoSegmentor, build_segmentor, check_segmentor
from groprompt.stages.runner import stage_parser
from groprompt.tracking import run_status, start_run, with_tracking_uri

if TYPE_CHECKING:
    from groprompt.models.frozen import FrozenEncoders

ANNOTATORS_FOLDER = "ref-davis17-annotators"  # under the output folder: anno_<k>/<video>/<frame>.png
GRABCUT_NOTE = (
    "segmentor grabcut: OpenCV GrabCut stands in for SAM because no pretrained SAM checkpoint is available; "
    "masks are GrabCut's from each prompt box, not SAM's"
)


def check_choices(boxes: str, segmentor: str | None, checkpoint: str | None) -> None:
    """ConfigError unless the box source and the segmentor (None: ``default_segmentor``) are known and model boxes have
    a checkpoint."""
    if boxes not in BOX_SOURCES:
        raise ConfigError(f"unknown box source {boxes!r}; known: {list(BOX_SOURCES)}")
    if segmentor is not None and segmentor not in SEGMENTORS:
        raise ConfigError(f"unknown segmentor {segmentor!r}; known: {sorted(SEGMENTORS)}")
    if boxes == "model" and not checkpoint:
        raise ConfigError("boxes 'model' need a checkpoint (--checkpoint: a folder, a file, or mlflow:<run_id>)")


def default_segmentor(model: ModelConfig) -> str:
    """The segmentor when none is named: ``sam`` when the configuration gives SAM weights (``model.sam_checkpoint``),
    else ``grabcut``, which needs none."""
    return "sam" if model.sam_checkpoint else "grabcut"


def print_segmentor_note(segmentor: str, config: Config, by_default: bool) -> None:
    """Say which segmentor the default chose and why, and when the masks are not SAM's (GrabCut) or come from a SAM
    without weights."""
    if by_default:
        weights = f"is {config.model.sam_checkpoint}" if config.model.sam_checkpoint else "is not set"
        print(f"segmentor {segmentor}: the default, as model.sam_checkpoint {weights} (--segmentor names another)", flush=True)
    if segmentor == "grabcut":
        print(GRABCUT_NOTE, flush=True)
    elif segmentor == "sam" and not config.model.sam_checkpoint:
        print(f"segmentor sam: SAM {config.model.sam} has random weights (no checkpoint); its masks are not meaningful", flush=True)


def _shard_rows(config: Config, split: str, need_embeddings: bool) -> list[dict[str, Any]]:
    """One row per frame shard of the split, in manifest order: its path, its sample keys, and its embedding
    shard's path when needed (checked), else None."""
    frames_dir = location(config.data.shards) / split
    rows, _ = read_manifest(frames_dir / MANIFEST)
    embeddings: dict[str, str] = {}
    if need_embeddings:  # shard_pairs checks frame and embedding shards against their manifests
        from groprompt.data.shard_pairs import shard_pairs

        embeddings = {p.frames.name: str(p.embeddings) for p in shard_pairs(config.data, split, frozen_sam(config.model))}
    else:
        for row in rows:
            check_shard(frames_dir / row["shard"], row, rerun="pipelines/shard.py")
    return [
        {"frames": str(frames_dir / row["shard"]), "embeddings": embeddings.get(row["shard"]), "samples": list(row["samples"])}
        for row in rows
    ]


def _segmentor(name: str, model_config: ModelConfig, frozen: FrozenEncoders | None) -> Segmentor | VideoSegmentor:
    """The named segmentor; SAM reuses the model's frozen SAM when there is one."""
    sam = (frozen.sam if frozen is not None else frozen_sam(model_config)) if name == "sam" else None
    return build_segmentor(name, sam=sam, config=model_config)


def _evaluate_group(group: dict[str, Any], settings: dict[str, Any]) -> list[dict[str, Any]]:
    """The Ray Data task: build the box source and the segmentor, score a group of shards (whole videos) in order."""
    import ray
    import torch

    torch.set_num_threads(1)
    model_config = settings["model_config"]
    box_source: BoxSource
    frozen = None
    if settings["boxes"] == "model":
        box_source = ModelBoxes.load(model_config, ray.get(settings["weights_ref"]))
        frozen = box_source.frozen
    else:
        box_source = REFERENCE_SOURCES[settings["boxes"]]()
    segmentor = _segmentor(settings["segmentor"], model_config, frozen)
    started = time.perf_counter()
    shards = list(zip(group["frames"], group["embeddings"]))
    partials = evaluate_shards(shards, box_source, segmentor, settings["png_dir"], settings["annotator_dir"])
    names = ", ".join(Path(frames).name for frames, _ in shards)
    print(f"{names}: {len(partials)} expression samples in {time.perf_counter() - started:.1f} s", flush=True)
    return partials


def _output_paths(out_dir: str | Path, png_dir: str | Path | None, needs_pngs: bool) -> tuple[Location, Location | None]:
    """The output folder (made, or a bucket checked writable) and the PNG folder: as given, else ``<out>/pngs`` when a
    submission or the MeViS protocol needs PNGs."""
    out = output_folder(out_dir)
    if png_dir is not None:
        return out, output_folder(png_dir)
    return out, out / "pngs" if needs_pngs else None


def _score_shards(rows: list[dict[str, Any]], settings: dict[str, Any], weights: TrainedWeights | None) -> list[dict[str, Any]]:
    """Partial rows of every shard, one Ray Data task per group of shards that holds whole videos (the model's
    online state runs through a video as in inference); the weights travel once, through the object store."""
    import ray

    groups = [
        {"frames": [row["frames"] for row in group], "embeddings": [row["embeddings"] for row in group]}
        for group in whole_video_groups(rows)
    ]
    print(f"{len(rows)} shards in {len(groups)} tasks, each holding whole videos", flush=True)
    task_settings = {**settings, "weights_ref": ray.put(weights) if weights is not None else None}
    return (
        ray.data.from_items(groups, override_num_blocks=len(groups))
        .flat_map(_evaluate_group, fn_kwargs={"settings": task_settings}, num_cpus=1)
        .take_all()
    )


def _record(summary: dict[str, Any], out: Location, config: Config, run_id: str | None, track: bool, run_name: str | None) -> None:
    """Write ``summary.json`` (with the run id) and log the evaluation into ``run_id``, else into a new run when ``track``."""
    own_run = run_id is None and track
    if own_run:
        run_id = start_run(config, run_name or f"evaluate-{summary['boxes']}-{summary['segmentor']}", tags={"stage": "evaluate"})
    summary["run_id"] = run_id
    summary_path = out / "summary.json"
    write_json_atomic(summary_path, summary)
    if run_id is not None:
        status = run_status(run_id, config.runtime.tracking_uri) if own_run else nullcontext()
        with status, local_file(location(summary["metrics"])) as metrics, local_file(summary_path) as summary_file:
            log_evaluation(run_id, summary, metrics, summary_file, config.runtime.tracking_uri)


def evaluate(
    config: Config,
    boxes: str,
    checkpoint: str | None = None,
    segmentor: str | None = None,
    split: str | None = None,
    out_dir: str | Path = "work/eval",
    png_dir: str | Path | None = None,
    submission: str | Path | None = None,
    run_id: str | None = None,
    track: bool = True,
    run_name: str | None = None,
) -> dict[str, Any]:
    """Evaluate one box source + segmentor on a split (Ray must be initialised); returns the summary. Without
    ``segmentor``, ``default_segmentor`` chooses from the model configuration (a trained model's, with model boxes).

    The summary (``groprompt.evaluation.aggregate.summarize``) also carries ``seconds``, ``metrics`` (the parquet
    path), ``boxes``, ``segmentor``, ``split``, ``checkpoint`` and ``run_id`` (None without tracking). ``run_id``
    logs into an existing MLflow run (refused when it holds an evaluation with other settings); otherwise ``track``
    creates one. With ``submission`` and no ``png_dir``, the PNGs go to ``<out_dir>/pngs``; the zip is refused
    (DataError) unless it holds every frame of every expression of the split's meta and nothing else.

    Ref-DAVIS17 (``data.format``) also writes each annotator's merged PNGs under ``<out_dir>/ref-davis17-annotators``
    and scores them with the unsupervised protocol against ``<data.root>/<split>/Annotations``: the summary's
    ``davis_unsupervised`` (``groprompt.evaluation.ref_davis.score_annotators``). MeViS, on a split with masks, scores
    every expression's PNGs (``<out_dir>/pngs`` unless ``png_dir``) by the MeViS protocol against
    ``<data.root>/<split>/mask_dict.json``: the summary's ``mevis`` (``groprompt.evaluation.mevis``); its submission
    zip holds ``<video>/<exp_id>/<frame>.png`` at the top (``groprompt.evaluation.submission.submission_layout``).
    """
    check_choices(boxes, segmentor, checkpoint)
    config = with_tracking_uri(config)
    split = split or config.data.val_split
    weights = None
    if boxes == "model":
        weights = load_trained(str(checkpoint), config.runtime.tracking_uri)
        config = with_model_of(config, weights)
    by_default = segmentor is None
    segmentor = segmentor or default_segmentor(config.model)
    settings = {"boxes": boxes, "segmentor": segmentor, "split": split, "checkpoint": checkpoint}
    if run_id is not None:
        unlogged_params(run_id, eval_params(settings), config.runtime.tracking_uri)  # refuse a conflicting run before the work
    mevis = config.data.format == "mevis" and split_has_masks(config.data.root, split)
    out, png_dir = _output_paths(out_dir, png_dir, needs_pngs=submission is not None or mevis)
    check_segmentor(segmentor, config.model)
    print_segmentor_note(segmentor, config, by_default)
    rows = _shard_rows(config, split, need_embeddings=boxes == "model" or segmentor == "sam")
    if not rows:
        raise DataError(f"{location(config.data.shards) / split}: lists no shards")
    print(f"evaluating {len(rows)} shards of split {split}: boxes {boxes}, segmentor {segmentor}", flush=True)

    started = time.perf_counter()
    annotator_dir = out / ANNOTATORS_FOLDER if config.data.format == "ref-davis17" else None
    task_settings = {
        "boxes": boxes,
        "segmentor": segmentor,
        "model_config": config.model,
        "png_dir": str(png_dir) if png_dir else None,
        "annotator_dir": str(annotator_dir) if annotator_dir else None,
    }
    table = merge_partials(_score_shards(rows, task_settings, weights))
    summary = summarize(table)
    if annotator_dir is not None:
        gt_dir = location(config.data.root) / split / "Annotations"
        summary["davis_unsupervised"] = score_annotators(gt_dir, annotator_dir, sorted(set(table["video"])))
    if mevis:
        summary["mevis"] = protocol_means(score_videos(read_videos(config.data.format, config.data.root, split, with_boxes=False), png_dir))
    metrics_path = out / "metrics.parquet"
    with atomic_path(metrics_path) as temporary:
        table.to_parquet(temporary, index=False)
    if submission is not None:
        expected = submission_members(read_videos(config.data.format, config.data.root, split, with_boxes=False))
        count = write_submission_zip(submission, submission_masks(png_dir), expected, submission_layout(config.data.format))
        print(f"wrote {submission}: {count} masks, every frame of every expression of split {split}", flush=True)
    summary.update(seconds=time.perf_counter() - started, metrics=str(metrics_path), **settings)
    _record(summary, out, config, run_id, track, run_name)
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """One line per group: per expression, the frame-sample IoU metrics and the Ref-DAVIS17 annotators when present,
    then per expression type."""

    def pct(value: Any) -> str:
        return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}"

    def scores(values: dict[str, Any]) -> str:
        return f"J&F {pct(values['JF'])}, J {pct(values['J'])}, F {pct(values['F'])}"

    lines = [
        f"{summary['n_expressions']} expressions, {summary['n_frames']} frames, per expression: {scores(summary)}, box IoU {pct(summary['box_iou'])}"
    ]
    if "overall_iou" in summary:
        precision = ", ".join(f"{k} {pct(v)}" for k, v in summary.items() if k.startswith("P@"))
        lines.append(
            f"{summary['n_samples']} frame samples: overall IoU {pct(summary['overall_iou'])}, mean IoU {pct(summary['mean_iou'])}, {precision}"
        )
    if "davis_unsupervised" in summary:
        davis = summary["davis_unsupervised"]
        lines.append(f"Ref-DAVIS17 unsupervised protocol, per annotator ({davis['n_sequences']} sequences, {davis['n_objects']} objects):")
        lines += [f"  {name:6} {scores(values)}" for name, values in davis.items() if isinstance(values, dict)]
    if "mevis" in summary:
        lines.append(f"MeViS protocol ({summary['mevis']['n_expressions']} expressions, all frames): {scores(summary['mevis'])}")
    for kind, values in summary.get("by_kind", {}).items():
        lines.append(f"  {kind}: {values['n_expressions']} expressions, J&F {pct(values['JF'])}, box IoU {pct(values['box_iou'])}")
    return "\n".join(lines)


def evaluate_parser(description: str | None) -> argparse.ArgumentParser:
    """The parser of ``pipelines/evaluate.py``: ``stage_parser`` and the stage's flags."""
    parser = stage_parser(description)
    parser.add_argument(
        "--boxes",
        required=True,
        choices=BOX_SOURCES,
        help="prompt boxes: the trained model, the ground truth (oracle), or a random object's ground truth (sentence-blind)",
    )
    parser.add_argument("--checkpoint", default=None, help="checkpoint folder or file, or mlflow:<run_id> (with --boxes model)")
    parser.add_argument(
        "--segmentor",
        default=None,
        choices=sorted(SEGMENTORS),
        help="box -> mask backend (default: sam when model.sam_checkpoint gives SAM weights, else grabcut)",
    )
    parser.add_argument("--split", default=None, help="split to evaluate (default: data.val_split)")
    parser.add_argument("--out", required=True, help="folder for metrics.parquet and summary.json")
    parser.add_argument("--png-dir", default=None, help="also write DAVIS palette PNGs <dir>/<video>/<exp_id>/<frame>.png")
    parser.add_argument("--submission", default=None, help="also write the server's submission zip (Ref-YouTube-VOS, MeViS)")
    parser.add_argument("--run-id", default=None, help="log into this MLflow run (default: create one)")
    parser.add_argument("--run-name", default=None, help="name of the created MLflow run")
    parser.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
    return parser
