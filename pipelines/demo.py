"""The embedded-default demo: the whole GroPrompt pipeline on one machine, local Ray, MLflow in SQLite.

    bash scripts/demo.sh            # or: .venv/bin/python pipelines/demo.py [--config conf/demo.yaml] [key=value ...]

Stages: generate RefShapes -> shard -> embed (tiny SAM, random weights) -> train L_box only and
L_box + L_contra on 2 workers -> sweep lambda_f x lambda_v (4 trials) -> evaluate -> ablation table.
Every stage's outcome is recorded under ``<work>/demo/``; a re-run reuses completed stages.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from groprompt.cluster import init_ray
from groprompt.config import Config, load_config, replace, with_absolute_paths
from groprompt.data.manifest import write_json_atomic
from groprompt.data.refshapes import RefShapesSpec, write_refshapes
from groprompt.data.shards import ShardSettings
from groprompt.report import ROW_BOX_ONLY, ROW_CONTRA, ablation_report, oracle_row, write_report
from groprompt.tracking import resolve_tracking_uri, with_tracking_uri
from pipelines.embed import embed_shards
from pipelines.evaluate import evaluate
from pipelines.shard import shard_dataset
from pipelines.sweep import sweep
from pipelines.train import train

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "conf" / "demo.yaml"
SEGMENTOR = "grabcut"


def stage(folder: Path, name: str, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run ``work`` once: its JSON outcome is stored and returned again on later runs."""
    marker = folder / f"{name}.json"
    if marker.is_file():
        print(f"[demo] {name}: done before, reusing {marker}", flush=True)
        return json.loads(marker.read_text())
    print(f"[demo] {name} ...", flush=True)
    started = time.perf_counter()
    outcome = work()
    write_json_atomic(marker, outcome)
    print(f"[demo] {name}: finished in {time.perf_counter() - started:.0f} s", flush=True)
    return outcome


def run_demo(config: Config, videos: int, frames: int, sweep_config: Path | None) -> str:
    """All stages; returns the ablation report (Markdown)."""
    config = with_tracking_uri(config)
    work = Path(config.train.storage_path).parent
    folder = work / "demo"
    folder.mkdir(parents=True, exist_ok=True)
    print(
        "[demo] No pretrained SAM checkpoint can be had on this machine: the demo uses a tiny SAM with RANDOM "
        f"weights ({config.model.sam}), and GrabCut (OpenCV) turns boxes into masks.",
        flush=True,
    )
    spec = RefShapesSpec(videos=videos, frames=frames, size=config.data.max_side, seed=config.train.seed)
    stage(folder, "data", lambda: {"splits": {k: len(v) for k, v in write_refshapes(config.data.root, spec).items()}})
    for split in (config.data.split, config.data.val_split):
        settings = ShardSettings(window=config.data.window, max_side=config.data.max_side, shard_bytes=config.data.shard_bytes, with_masks=split != config.data.split)
        stage(folder, f"shard-{split}", lambda: {"manifest": str(shard_dataset(config.data.format, config.data.root, split, Path(config.data.shards) / split, settings))})
        stage(folder, f"embed-{split}", lambda: {"manifest": str(embed_shards(Path(config.data.shards) / split, Path(config.data.embeddings) / split, config.model.sam, config.model.sam_checkpoint, config.model.sam_seed, dtype=config.data.embed_dtype))})

    variants = {
        ROW_BOX_ONLY: replace(config, **{"loss.textcon": False, "loss.modalcon": False, "train.name": "demo-box-only"}),
        ROW_CONTRA: replace(config, **{"train.name": "demo-contrastive"}),
    }
    summaries: dict[str, Any] = {}
    for row, variant in variants.items():
        trained = stage(folder, f"train-{variant.train.name}", lambda: _trained(variant))
        summaries[row] = stage(folder, f"evaluate-{variant.train.name}", lambda: evaluate(
            variant, "model", checkpoint=f"mlflow:{trained['run_id']}", segmentor=SEGMENTOR,
            out_dir=work / "eval" / variant.train.name, run_id=trained["run_id"]))
    if sweep_config is not None:
        swept = replace(config, **{"train.name": "demo"}, **_sweep_overrides(sweep_config))
        stage(folder, "sweep", lambda: _swept(swept))
    summaries[oracle_row(SEGMENTOR)] = stage(folder, "evaluate-oracle", lambda: evaluate(
        config, "oracle", segmentor=SEGMENTOR, out_dir=work / "eval" / "oracle", run_name="demo-oracle-grabcut"))
    report_path = work / "ablation.md"
    write_report(report_path, summaries, run_id=summaries[ROW_CONTRA].get("run_id"), tracking_uri=config.runtime.tracking_uri)
    return report_path.read_text()


def _trained(config: Config) -> dict[str, Any]:
    outcome = train(config)
    return {"run_id": outcome["run_id"], "metrics": outcome["metrics"]}


def _swept(config: Config) -> dict[str, Any]:
    outcome = sweep(config)
    return {"rows": outcome["rows"], "best": outcome["best"], "parent_run_id": outcome["parent_run_id"]}


def _sweep_overrides(path: Path) -> dict[str, Any]:
    sweep_section = load_config([path]).sweep
    return {f"sweep.{key}": getattr(sweep_section, key) for key in ("mode", "lambda_f", "lambda_v", "num_samples", "grace_period")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", action="append", default=None, help=f"YAML file(s) (default {DEFAULT_CONFIG.name})")
    parser.add_argument("--videos", type=int, default=48, help="RefShapes videos to generate")
    parser.add_argument("--frames", type=int, default=8, help="frames per video")
    parser.add_argument("--sweep", default=str(DEFAULT_CONFIG.parent / "sweep" / "demo.yaml"), help="sweep file, or 'none'")
    parser.add_argument("overrides", nargs="*", help="key.sub=value")
    args = parser.parse_args(argv)
    config = with_absolute_paths(load_config(args.config or [DEFAULT_CONFIG], args.overrides))
    init_ray(config.runtime.ray_address)
    report = run_demo(config, args.videos, args.frames, None if args.sweep == "none" else Path(args.sweep))
    print("\n" + report)
    uri = resolve_tracking_uri(config.runtime.tracking_uri)
    print(f"Open the MLflow UI on these runs:\n  .venv/bin/mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000\n"
          "then browse http://127.0.0.1:5000")
    return 0


if __name__ == "__main__":
    sys.exit(main())
