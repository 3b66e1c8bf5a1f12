"""The batch inference stage: every (video, query) of an archive segmented on a Ray Data actor pool.

The queries are grouped per video, and each video is one row of a Ray Data pipeline. One actor class holds the
predictor (frozen SAM, text encoder, trained proposal generator, segmentor); the pool has one actor per logical
CPU of the cluster (at most one per video). Each actor streams its videos through ``infer_video``. Finished
videos are verified on the driver first, so a complete re-run starts no actor.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import groprompt
from groprompt.checkpoints import TrainedWeights, load_trained, random_weights, with_model_of
from groprompt.config import Config, ModelConfig, with_absolute_paths
from groprompt.data.manifest import MANIFEST, write_manifest
from groprompt.errors import ConfigError
from groprompt.files import Location, check_store, location, output_folder, write_json_atomic
from groprompt.inference.predictor import build_predictor
from groprompt.inference.queries import InputError, Query, group_queries, read_queries, write_errors
from groprompt.inference.sources import VideoSource, discover_videos
from groprompt.inference.video import OutputOptions, VideoResult, infer_video, masks_path, output_fingerprint, verified_rows
from groprompt.models.segmentors import SEGMENTORS, check_segmentor
from groprompt.stages.runner import stage_parser
from groprompt.tracking import with_tracking_uri
from groprompt.viz.overlay_videos import OVERLAY_FORMATS

ERRORS = "errors.parquet"
SUMMARY = "summary.json"


class VideoInferencer:
    """A Ray Data actor: the predictor, loaded once; segments one video (all its queries) per row."""

    def __init__(
        self,
        model_config: ModelConfig,
        weights: TrainedWeights,
        segmentor: str,
        seed: int,
        out_dir: str,
        options: OutputOptions,
        threads: int,
    ) -> None:
        import torch

        torch.set_num_threads(max(1, threads))
        self.model_config = model_config
        self.predictor = build_predictor(model_config, weights, segmentor, seed)
        self.out_dir, self.options = out_dir, options

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        source = VideoSource(**row["source"])
        queries = [Query(**q) for q in row["queries"]]
        result = infer_video(
            self.predictor, source, queries, self.out_dir, self.model_config, self.options, log=lambda m: print(m, flush=True)
        )
        return {"result": {**result.to_row(), "errors": [asdict(e) for e in result.errors]}}


def _result_from_row(row: dict[str, Any]) -> VideoResult:
    """The ``VideoResult`` behind an actor's output row (Ray Data hands lists back as arrays)."""
    errors = [InputError(**e) for e in row.get("errors") or []]
    fields = {k: v for k, v in row.items() if k != "errors"}
    return VideoResult(**{**fields, "overlays": list(row.get("overlays") or []), "errors": errors})


def resolve_weights(config: Config, checkpoint: str | None, random_model: bool) -> tuple[Config, TrainedWeights]:
    """The weights to load, and the configuration that builds them (MLflow runs bring their own model section)."""
    if random_model == (checkpoint is not None):
        raise ConfigError("give exactly one of --checkpoint (a folder, a file or mlflow:<run_id>) and --random-model")
    if random_model:
        return config, random_weights(config.train.seed)
    config = with_tracking_uri(config)
    weights = load_trained(checkpoint, config.runtime.tracking_uri)
    return with_model_of(config, weights), weights


def infer(
    config: Config,
    videos: str | Path | Sequence[str | Path],
    queries: str | Path,
    out_dir: str | Path,
    checkpoint: str | None = None,
    random_model: bool = False,
    segmentor: str = "sam",
    png: bool = False,
    overlay: str | None = None,
    encode_batch: int = 4,
) -> dict[str, Any]:
    """Segment every (video, query) into ``out_dir``; returns the summary (also written as ``summary.json``).

    Outputs: ``masks/``, ``png/``, ``overlays/`` (see ``groprompt.inference``), ``errors.parquet`` (video,
    query, reason), ``manifest.parquet`` (one row per video) and ``summary.json``. With ``random_model`` the
    proposal generator is UNTRAINED (random weights from ``train.seed``): boxes and masks are meaningless,
    which is what smoke tests and benchmarks need.
    """
    started = time.perf_counter()
    config, weights = resolve_weights(with_absolute_paths(config), checkpoint, random_model)
    if segmentor not in SEGMENTORS:
        raise ConfigError(f"unknown segmentor {segmentor!r}; known: {sorted(SEGMENTORS)}")
    check_segmentor(segmentor, config.model)
    options = OutputOptions(png=png, overlay=overlay, encode_batch=encode_batch)
    out = output_folder(out_dir)
    for named in (videos, queries) if isinstance(videos, (str, Path)) else (queries,):
        check_store(location(named))

    sources = discover_videos(videos)
    parsed, errors = read_queries(queries)
    grouped, missing = group_queries(parsed, sources)
    errors += missing
    results, pending = _split_finished(grouped, out, weights.model_id, segmentor, config.model, options)
    print(
        f"{len(grouped)} videos with {len(parsed)} queries ({len(results)} already done, {len(pending)} to run), "
        f"{len(errors)} input errors -> {out}",
        flush=True,
    )
    if pending:
        results += _run_actors(pending, config, weights, segmentor, out, options)

    results.sort(key=lambda r: r.video)
    for result in results:
        errors += result.errors
    write_errors(out / ERRORS, errors)
    metadata = {
        "stage": "infer",
        "model": weights.model_id,
        "segmentor": segmentor,
        "options": asdict(options),
        "version": groprompt.__version__,
    }
    write_manifest(out / MANIFEST, [r.to_row() for r in results], metadata)
    summary = _summary(results, errors, time.perf_counter() - started, weights, segmentor, out)
    write_json_atomic(out / SUMMARY, summary)
    print(format_summary(summary), flush=True)
    return summary


def _split_finished(
    grouped: list[tuple[VideoSource, list[Query]]],
    out: Location,
    model_id: str,
    segmentor: str,
    model_config: ModelConfig,
    options: OutputOptions,
) -> tuple[list[VideoResult], list[dict[str, Any]]]:
    """The videos whose outputs already verify (as ``skipped`` results), and the rows of the others to run."""
    skipped: list[VideoResult] = []
    pending: list[dict[str, Any]] = []
    for source, queries in grouped:
        parquet = masks_path(out, source.name)
        rows = verified_rows(parquet, output_fingerprint(source, queries, model_id, segmentor, model_config, options))
        if rows is None:
            pending.append({"source": asdict(source), "queries": [asdict(q) for q in queries]})
        else:
            skipped.append(VideoResult(source.name, source.path, "skipped", len(queries), rows // len(queries), rows, str(parquet)))
    return skipped, pending


def _run_actors(
    pending: list[dict[str, Any]], config: Config, weights: TrainedWeights, segmentor: str, out: Location, options: OutputOptions
) -> list[VideoResult]:
    """Segment the pending videos (one row each) on a pool of ``VideoInferencer`` actors sized to the cluster."""
    import ray

    from groprompt.cluster import cluster_cpus

    cpus = cluster_cpus()
    actors = max(1, min(len(pending), int(cpus)))
    threads = max(1, int(cpus // actors))
    untrained = " (UNTRAINED random weights)" if weights.state is None else ""
    print(
        f"actor pool: {actors} CPU actors x {threads} torch threads; model {weights.model_id}{untrained}, segmentor {segmentor}", flush=True
    )
    actor_args = {
        "model_config": config.model,
        "weights": weights,
        "segmentor": segmentor,
        "seed": config.train.seed,
        "out_dir": str(out),
        "options": options,
        "threads": threads,
    }
    rows = (
        ray.data.from_items(pending, override_num_blocks=len(pending))
        .map(VideoInferencer, fn_constructor_kwargs=actor_args, compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=1)
        .take_all()
    )
    return [_result_from_row(row["result"]) for row in rows]


def _summary(
    results: list[VideoResult], errors: list[InputError], wall: float, weights: TrainedWeights, segmentor: str, out: Location
) -> dict[str, Any]:
    """Counts, throughput and where the tables are (written as ``summary.json``)."""
    frames = sum(r.n_frames for r in results if r.status == "done")
    return {
        "videos": len(results),
        "done": sum(r.status == "done" for r in results),
        "skipped": sum(r.status == "skipped" for r in results),
        "failed": sum(r.status == "failed" for r in results),
        "errors": len(errors),
        "first_error": errors[0].reason if errors else None,
        "frames": frames,
        "rows": sum(r.rows for r in results),
        "wall_s": round(wall, 2),
        "frames_per_s": round(frames / wall, 2) if wall > 0 else 0.0,
        "model": weights.model_id,
        "untrained": weights.state is None,
        "segmentor": segmentor,
        "manifest": str(out / MANIFEST),
        "errors_table": str(out / ERRORS),
    }


def format_summary(summary: dict[str, Any]) -> str:
    """The one-line report of a run."""
    return (
        f"{summary['done']} videos done, {summary['skipped']} skipped, {summary['failed']} failed, {summary['errors']} errors; "
        f"{summary['frames']} frames in {summary['wall_s']:.1f} s ({summary['frames_per_s']} frames/s); manifest {summary['manifest']}"
    )


def infer_parser(description: str | None) -> argparse.ArgumentParser:
    """The parser of ``pipelines/infer.py``: ``stage_parser`` and the stage's flags."""
    parser = stage_parser(description)
    parser.add_argument("--videos", nargs="+", required=True, help="folder of videos / frame folders, a .txt list, or paths")
    parser.add_argument("--queries", required=True, help="CSV (video,query) or JSONL file")
    parser.add_argument("--out", required=True, help="output folder")
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--checkpoint", help="checkpoint folder or file, or mlflow:<run_id>")
    model.add_argument("--random-model", action="store_true", help="UNTRAINED random proposal generator (smoke tests)")
    parser.add_argument("--segmentor", default="sam", choices=sorted(SEGMENTORS), help="box -> mask backend")
    parser.add_argument("--png", action="store_true", help="also write DAVIS palette PNGs per (video, query)")
    parser.add_argument("--overlay", choices=OVERLAY_FORMATS, default=None, help="also write an overlay video per (video, query)")
    parser.add_argument("--encode-batch", type=int, default=4, help="frames per SAM encoder pass")
    return parser
