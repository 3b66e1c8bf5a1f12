"""Batch referring segmentation of a video archive on a Ray Data actor pool (streamed, resumable).

    python pipelines/infer.py --config conf/tiny.yaml --videos videos/ --queries queries.csv --out work/infer \
        --checkpoint work/ray_results/groprompt/checkpoint_000011 [--segmentor sam|grabcut|box] [--png] [--overlay gif|mp4]

``--videos`` is a folder of video files (MP4 and whatever else PyAV reads) and/or frame folders (JPEG/PNG), a
``.txt`` list of paths, or several paths. ``--queries`` is a CSV (``video,query``) or JSONL
(``{"video": ..., "query": ...}``); ``video`` is the file stem or folder name.

The queries are grouped per video, and each video is one row of a Ray Data pipeline. One actor class holds
the frozen SAM, the text encoder, the trained proposal generator and the segmentor; the pool has one actor
per logical CPU of the cluster (at most one per video). An actor streams its video's frames through the SAM
encoder a few at a time, the proposal generator online over the frames for all the video's queries at once,
and the segmentor, and writes ``masks/<video>.parquet`` (plus optional PNGs and overlay videos) as it goes:
memory does not grow with the video's length. (The encoder and the decoder share an actor so that image
embeddings never travel between processes. Actors run on CPU.)

Outputs under ``--out``: ``masks/<video>.parquet``, ``png/``, ``overlays/``, ``errors.parquet`` (video, query,
reason: unreadable videos, queries naming a missing video, empty queries), ``manifest.parquet`` (one row per
video) and ``summary.json``. A re-run skips every video whose parquet file verifies.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import groprompt
from groprompt.cluster import cluster_cpus, init_ray
from groprompt.config import Config, ModelConfig, from_dict, load_config, to_dict, with_absolute_paths
from groprompt.data.manifest import MANIFEST, write_json_atomic, write_manifest
from groprompt.data.records import DataError
from groprompt.inference import (
    OVERLAY_FORMATS,
    InputError,
    OutputOptions,
    Query,
    VideoResult,
    VideoSource,
    build_predictor,
    discover_videos,
    group_queries,
    load_model_state,
    masks_path,
    output_fingerprint,
    read_queries,
    verified_rows,
    write_errors,
)
from groprompt.segmentors import SEGMENTORS

ERRORS = "errors.parquet"
SUMMARY = "summary.json"


class VideoInferencer:
    """A Ray Data actor: the predictor, loaded once; segments one video (all its queries) per row."""

    def __init__(
        self, model: dict[str, Any], state: dict[str, Any] | None, model_id: str, segmentor: str, seed: int, out_dir: str, options: dict[str, Any], threads: int
    ) -> None:
        import torch

        torch.set_num_threads(max(1, threads))
        self.model_config: ModelConfig = from_dict({"model": model}).model
        self.predictor = build_predictor(self.model_config, state, segmentor, seed, model_id)
        self.out_dir, self.options = out_dir, OutputOptions(**options)

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        from groprompt.inference import infer_video

        source = VideoSource(**row["source"])
        queries = [Query(**q) for q in row["queries"]]
        result = infer_video(self.predictor, source, queries, self.out_dir, self.model_config, self.options, log=lambda m: print(m, flush=True))
        return {"result": _result_to_dict(result)}


def _result_to_dict(result: VideoResult) -> dict[str, Any]:
    return {**result.to_row(), "errors": [asdict(e) for e in result.errors]}


def _result_from_dict(row: dict[str, Any]) -> VideoResult:
    errors = [InputError(**e) for e in row.get("errors") or []]
    return VideoResult(**{**{k: v for k, v in row.items() if k != "errors"}, "overlays": list(row.get("overlays") or []), "errors": errors})


def resolve_model(config: Config, checkpoint: str | None, random_model: bool) -> tuple[Config, dict[str, Any] | None, str]:
    """The configuration to build (MLflow runs bring their own model section), the state dict and its id."""
    if random_model == (checkpoint is not None):
        raise ValueError("give exactly one of --checkpoint (a folder, a file or mlflow:<run_id>) and --random-model")
    if random_model:
        return config, None, f"random:{config.train.seed}"
    state, logged_model, model_id = load_model_state(checkpoint)
    if logged_model is not None:
        config = from_dict({**to_dict(config), "model": to_dict(logged_model)})
    return config, state, model_id


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

    With ``random_model`` the proposal generator is UNTRAINED (random weights from ``train.seed``): boxes and
    masks are meaningless, which is what smoke tests and benchmarks need.
    """
    import ray

    started = time.perf_counter()
    config = with_absolute_paths(config)
    config, state, model_id = resolve_model(config, checkpoint, random_model)
    if segmentor not in SEGMENTORS:
        raise ValueError(f"unknown segmentor {segmentor!r}; known: {sorted(SEGMENTORS)}")
    options = OutputOptions(png=png, overlay=overlay, encode_batch=encode_batch)
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)

    sources = discover_videos(videos)
    parsed, errors = read_queries(queries)
    grouped, missing = group_queries(parsed, sources)
    errors += missing

    results: list[VideoResult] = []
    pending: list[dict[str, Any]] = []
    for source, video_queries in grouped:  # verify finished videos here, so a complete re-run starts no actor
        expected = output_fingerprint(source, video_queries, model_id, segmentor, config.model, options)
        rows = verified_rows(masks_path(out, source.name), expected)
        if rows is None:
            pending.append({"source": asdict(source), "queries": [asdict(q) for q in video_queries]})
        else:
            results.append(VideoResult(source.name, source.path, "skipped", len(video_queries), rows // len(video_queries), rows, str(masks_path(out, source.name))))
    print(f"{len(grouped)} videos with {len(parsed)} queries ({len(results)} already done, {len(pending)} to run), "
          f"{len(errors)} input errors -> {out}", flush=True)

    if pending:
        cpus = cluster_cpus()
        actors = max(1, min(len(pending), int(cpus)))
        threads = max(1, int(cpus // actors))
        print(f"actor pool: {actors} CPU actors x {threads} torch threads; "
              f"model {model_id}{' (UNTRAINED random weights)' if state is None else ''}, segmentor {segmentor}", flush=True)
        actor_args = {
            "model": to_dict(config.model),
            "state": state,
            "model_id": model_id,
            "segmentor": segmentor,
            "seed": config.train.seed,
            "out_dir": str(out),
            "options": asdict(options),
            "threads": threads,
        }
        rows = (
            ray.data.from_items(pending, override_num_blocks=len(pending))
            .map(
                VideoInferencer,
                fn_constructor_kwargs=actor_args,
                compute=ray.data.ActorPoolStrategy(size=actors),
                num_cpus=1,
            )
            .take_all()
        )
        results += [_result_from_dict(row["result"]) for row in rows]

    results.sort(key=lambda r: r.video)
    for result in results:
        errors += result.errors
    write_errors(out / ERRORS, errors)
    metadata = {"stage": "infer", "model": model_id, "segmentor": segmentor, "options": asdict(options), "version": groprompt.__version__}
    write_manifest(out / MANIFEST, [r.to_row() for r in results], metadata)
    wall = time.perf_counter() - started
    computed = [r for r in results if r.status == "done"]
    frames = sum(r.n_frames for r in computed)
    summary = {
        "videos": len(results),
        "done": len(computed),
        "skipped": sum(r.status == "skipped" for r in results),
        "failed": sum(r.status == "failed" for r in results),
        "errors": len(errors),
        "frames": frames,
        "rows": sum(r.rows for r in results),
        "wall_s": round(wall, 2),
        "frames_per_s": round(frames / wall, 2) if wall > 0 else 0.0,
        "model": model_id,
        "untrained": state is None,
        "segmentor": segmentor,
        "manifest": str(out / MANIFEST),
        "errors_table": str(out / ERRORS),
    }
    write_json_atomic(out / SUMMARY, summary)
    print(f"{summary['done']} videos done, {summary['skipped']} skipped, {summary['failed']} failed, {len(errors)} errors; "
          f"{frames} frames in {wall:.1f} s ({summary['frames_per_s']} frames/s); manifest {out / MANIFEST}", flush=True)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", action="append", default=[], help="YAML configuration (repeatable), e.g. conf/tiny.yaml")
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
    parser.add_argument("--address", default=None, help="Ray cluster address (default: $RAY_ADDRESS or a local Ray)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help="dotted override (repeatable)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides before the options, e.g. model.sam=tiny model.sam_checkpoint=sam.pth")
    args = parser.parse_args(argv)
    config = load_config(args.config or ["conf/tiny.yaml"], args.overrides + args.sets)
    videos = args.videos[0] if len(args.videos) == 1 else args.videos
    init_ray(args.address or config.runtime.ray_address)
    try:
        summary = infer(config, videos, args.queries, args.out, args.checkpoint, args.random_model, args.segmentor, args.png, args.overlay, args.encode_batch)
    except (DataError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0 if summary["failed"] == 0 else 1


if __name__ == "__main__":
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "0")
    sys.exit(main())
