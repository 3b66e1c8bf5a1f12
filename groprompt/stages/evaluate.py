"""The evaluate stage: one Ray Data task per frame shard scores a box source + segmentor; the driver merges the
partial rows, writes ``<out>/metrics.parquet`` (one row per expression) and ``<out>/summary.json``, and logs both
to MLflow (``groprompt.evaluation`` describes the protocol)."""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from groprompt.checkpoints import TrainedWeights, load_trained, with_model_of
from groprompt.config import Config, ModelConfig
from groprompt.data.manifest import MANIFEST, read_manifest
from groprompt.errors import ConfigError, DataError
from groprompt.evaluation.aggregate import merge_partials, summarize
from groprompt.evaluation.box_sources import BOX_SOURCES, BoxSource, ModelBoxes, OracleBoxes
from groprompt.evaluation.scoring import evaluate_shard
from groprompt.evaluation.submission import submission_masks
from groprompt.evaluation.tracking import eval_params, log_evaluation, unlogged_params
from groprompt.files import atomic_path, write_json_atomic
from groprompt.outputs import write_submission_zip
from groprompt.segmentors import SEGMENTORS, Segmentor, build_segmentor
from groprompt.tracking import run_status, start_run, with_tracking_uri

if TYPE_CHECKING:
    from groprompt.models.frozen import FrozenEncoders
    from groprompt.models.sam import FrozenSam

GRABCUT_NOTE = (
    "segmentor grabcut: OpenCV GrabCut stands in for SAM because no pretrained SAM checkpoint is available; "
    "masks are GrabCut's from each prompt box, not SAM's"
)


def check_choices(boxes: str, segmentor: str, checkpoint: str | None) -> None:
    """ConfigError unless the box source and the segmentor are known and model boxes have a checkpoint."""
    if boxes not in BOX_SOURCES:
        raise ConfigError(f"unknown box source {boxes!r}; known: {list(BOX_SOURCES)}")
    if segmentor not in SEGMENTORS:
        raise ConfigError(f"unknown segmentor {segmentor!r}; known: {sorted(SEGMENTORS)}")
    if boxes == "model" and not checkpoint:
        raise ConfigError("boxes 'model' need a checkpoint (--checkpoint: a folder, a file, or mlflow:<run_id>)")


def print_segmentor_note(segmentor: str, config: Config) -> None:
    """Say when the masks are not SAM's (GrabCut) or come from a SAM without weights."""
    if segmentor == "grabcut":
        print(GRABCUT_NOTE, flush=True)
    elif segmentor == "sam" and not config.model.sam_checkpoint:
        print(f"segmentor sam: SAM {config.model.sam} has random weights (no checkpoint); its masks are not meaningful", flush=True)


def _frozen_sam(model_config: ModelConfig) -> FrozenSam:
    """The frozen SAM of the model configuration (its checkpoint, else random weights from its seed)."""
    from groprompt.models.sam import FrozenSam

    return FrozenSam.from_name(model_config.sam, checkpoint=model_config.sam_checkpoint, seed=model_config.sam_seed)


def _shard_rows(config: Config, split: str, need_embeddings: bool) -> list[dict[str, Any]]:
    """One row per frame shard of the split: its path, and its embedding shard's when needed (checked)."""
    if need_embeddings:
        from groprompt.data.clips import shard_pairs

        return [
            {"frames": str(p.frames), "embeddings": str(p.embeddings)} for p in shard_pairs(config.data, split, _frozen_sam(config.model))
        ]
    frames_dir = Path(config.data.shards) / split
    rows, _ = read_manifest(frames_dir / MANIFEST)
    return [{"frames": str(frames_dir / row["shard"]), "embeddings": None} for row in rows]


def _segmentor(name: str, model_config: ModelConfig, frozen: FrozenEncoders | None) -> Segmentor:
    """The named segmentor; SAM reuses the model's frozen SAM when there is one."""
    sam = (frozen.sam if frozen is not None else _frozen_sam(model_config)) if name == "sam" else None
    return build_segmentor(name, sam=sam)


def _evaluate_row(row: dict[str, Any], settings: dict[str, Any]) -> list[dict[str, Any]]:
    """The Ray Data task: build the box source and the segmentor, score one shard."""
    import ray
    import torch

    torch.set_num_threads(1)
    model_config = settings["model_config"]
    box_source: BoxSource = OracleBoxes()
    frozen = None
    if settings["boxes"] == "model":
        box_source = ModelBoxes.load(model_config, ray.get(settings["weights_ref"]))
        frozen = box_source.frozen
    segmentor = _segmentor(settings["segmentor"], model_config, frozen)
    started = time.perf_counter()
    partials = evaluate_shard(row["frames"], row["embeddings"], box_source, segmentor, settings["png_dir"])
    print(f"{Path(row['frames']).name}: {len(partials)} expression samples in {time.perf_counter() - started:.1f} s", flush=True)
    return partials


def _output_paths(out_dir: str | Path, png_dir: str | Path | None, submission: str | Path | None) -> tuple[Path, Path | None]:
    """The output folder (created) and the PNG folder: as given, else ``<out>/pngs`` when a submission needs PNGs."""
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if submission is not None and png_dir is None:
        png_dir = out / "pngs"
    return out, Path(png_dir).resolve() if png_dir is not None else None


def _score_shards(rows: list[dict[str, Any]], settings: dict[str, Any], weights: TrainedWeights | None) -> list[dict[str, Any]]:
    """Partial rows of every shard, one Ray Data task per shard; the weights travel once, through the object store."""
    import ray

    task_settings = {**settings, "weights_ref": ray.put(weights) if weights is not None else None}
    return (
        ray.data.from_items(rows, override_num_blocks=len(rows))
        .flat_map(_evaluate_row, fn_kwargs={"settings": task_settings}, num_cpus=1)
        .take_all()
    )


def _record(summary: dict[str, Any], out: Path, config: Config, run_id: str | None, track: bool, run_name: str | None) -> None:
    """Write ``summary.json`` (with the run id) and log the evaluation into ``run_id``, else into a new run when ``track``."""
    own_run = run_id is None and track
    if own_run:
        run_id = start_run(config, run_name or f"evaluate-{summary['boxes']}-{summary['segmentor']}", tags={"stage": "evaluate"})
    summary["run_id"] = run_id
    summary_path = out / "summary.json"
    write_json_atomic(summary_path, summary)
    if run_id is not None:
        with run_status(run_id, config.runtime.tracking_uri) if own_run else nullcontext():
            log_evaluation(run_id, summary, Path(summary["metrics"]), summary_path, config.runtime.tracking_uri)


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

    The summary (``groprompt.evaluation.aggregate.summarize``) also carries ``seconds``, ``metrics`` (the parquet
    path), ``boxes``, ``segmentor``, ``split``, ``checkpoint`` and ``run_id`` (None without tracking). ``run_id``
    logs into an existing MLflow run (refused when it holds an evaluation with other settings); otherwise ``track``
    creates one. With ``submission`` and no ``png_dir``, the PNGs go to ``<out_dir>/pngs``.
    """
    check_choices(boxes, segmentor, checkpoint)
    config = with_tracking_uri(config)
    split = split or config.data.val_split
    settings = {"boxes": boxes, "segmentor": segmentor, "split": split, "checkpoint": checkpoint}
    if run_id is not None:
        unlogged_params(run_id, eval_params(settings), config.runtime.tracking_uri)  # refuse a conflicting run before the work
    weights = None
    if boxes == "model":
        weights = load_trained(str(checkpoint), config.runtime.tracking_uri)
        config = with_model_of(config, weights)
    out, png_dir = _output_paths(out_dir, png_dir, submission)
    print_segmentor_note(segmentor, config)
    rows = _shard_rows(config, split, need_embeddings=boxes == "model" or segmentor == "sam")
    if not rows:
        raise DataError(f"{Path(config.data.shards) / split}: lists no shards")
    print(f"evaluating {len(rows)} shards of split {split}: boxes {boxes}, segmentor {segmentor}", flush=True)

    started = time.perf_counter()
    task_settings = {"boxes": boxes, "segmentor": segmentor, "model_config": config.model, "png_dir": str(png_dir) if png_dir else None}
    table = merge_partials(_score_shards(rows, task_settings, weights))
    summary = summarize(table)
    metrics_path = out / "metrics.parquet"
    with atomic_path(metrics_path) as temporary:
        table.to_parquet(temporary, index=False)
    if submission is not None:
        count = write_submission_zip(submission, submission_masks(png_dir))
        print(f"wrote {submission}: {count} masks", flush=True)
    summary.update(seconds=time.perf_counter() - started, metrics=str(metrics_path), **settings)
    _record(summary, out, config, run_id, track, run_name)
    return summary


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
