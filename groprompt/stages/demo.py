"""The embedded-default demo: the whole GroPrompt pipeline on one machine, local Ray, MLflow in SQLite.

Stages: generate RefShapes -> shard -> embed (tiny SAM, random weights) -> train L_box only and
L_box + L_contra on 2 workers -> sweep lambda_f x lambda_v -> evaluate (and the sentence-blind and ground-truth
references) -> ablation table, and GIF overlays of the L_box + L_contra model on held-out videos (``<work>/overlays/``).
Training fits ``data.split`` and validates (and the sweep selects) on ``data.val_split``, held-out training videos
(``conf/demo.yaml``: ``train-fit`` / ``train-holdout``); the table and the GIFs report RefShapes' own ``valid`` videos,
which no stage selects on. Every stage's outcome is recorded under ``<work>/demo/``; a re-run reuses completed stages.
``<work>`` is a local folder of its own (records, evaluations, overlays, the report); the data, shards, embeddings and
training runs go where the configuration says, local or in a bucket.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from groprompt.config import Config, load_config, replace
from groprompt.data.refshapes import RefShapesSpec, write_refshapes
from groprompt.evaluation.report import ROW_BOX_ONLY, ROW_CONTRA, ROW_SENTENCE_BLIND, oracle_row, write_report
from groprompt.files import Location, write_json_atomic
from groprompt.stages.embed import embed_split
from groprompt.stages.evaluate import evaluate
from groprompt.stages.shard import shard_split
from groprompt.stages.sweep import sweep
from groprompt.stages.train import train
from groprompt.tracking import with_tracking_uri
from groprompt.viz.heldout import OVERLAYS_FOLDER, write_overlays

SEGMENTOR = "grabcut"
OVERLAY_VIDEOS = 3  # held-out videos drawn as GIFs
SWEEP_KEYS = ("mode", "lambda_f", "lambda_v", "num_samples", "grace_period")
TEST_SPLIT = "valid"  # what the ablation table reports: never trained, validated or selected on
SENTENCE_TYPE_SHARE = 0.5  # the chance of a multi-object and of a leaves-frame sentence per video (RefShapesSpec)


def stage(folder: Location, name: str, work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
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


def run_demo(config: Config, work: Location, videos: int, frames: int, sweep_config: Path | None, test_fraction: float = 0.25) -> str:
    """All stages on ``videos`` generated videos (``test_fraction`` of them in the reported split), recorded under
    ``work``; returns the ablation report (Markdown)."""
    config = with_tracking_uri(config)
    folder = work / "demo"
    folder.mkdir(parents=True, exist_ok=True)
    print(
        "[demo] No pretrained SAM checkpoint can be had on this machine: the demo uses a tiny SAM with RANDOM "
        f"weights ({config.model.sam}), and GrabCut (OpenCV) turns boxes into masks.",
        flush=True,
    )
    spec = RefShapesSpec(
        videos=videos,
        frames=frames,
        size=config.data.max_side,
        seed=config.train.seed,
        multi_object_share=SENTENCE_TYPE_SHARE,
        leaves_frame_share=SENTENCE_TYPE_SHARE,
    )
    stage(
        folder,
        "data",
        lambda: {"splits": {k: len(v) for k, v in write_refshapes(config.data.root, spec, valid_fraction=test_fraction).items()}},
    )
    for split in dict.fromkeys((config.data.split, config.data.val_split, TEST_SPLIT)):
        stage(folder, f"shard-{split}", lambda: {"manifest": str(shard_split(config, split))})
        stage(folder, f"embed-{split}", lambda: {"manifest": str(embed_split(config, split))})

    variants = {
        ROW_BOX_ONLY: replace(config, **{"loss.textcon": False, "loss.modalcon": False, "train.name": "demo-box-only"}),
        ROW_CONTRA: replace(config, **{"train.name": "demo-contrastive"}),
    }
    summaries: dict[str, Any] = {}
    runs: dict[str, str] = {}
    for row, variant in variants.items():
        trained = stage(folder, f"train-{variant.train.name}", lambda: _trained(variant))
        runs[row] = trained["run_id"]
        summaries[row] = stage(
            folder,
            f"evaluate-{variant.train.name}",
            lambda: evaluate(
                variant,
                "model",
                checkpoint=f"mlflow:{trained['run_id']}",
                segmentor=SEGMENTOR,
                split=TEST_SPLIT,
                out_dir=work / "eval" / variant.train.name,
                run_id=trained["run_id"],
            ),
        )
    if sweep_config is not None:
        swept = replace(config, **{"train.name": "demo"}, **_sweep_overrides(sweep_config))
        stage(folder, "sweep", lambda: _swept(swept))
    references = {ROW_SENTENCE_BLIND: "sentence-blind", oracle_row(SEGMENTOR): "oracle"}
    for row, boxes in references.items():
        summaries[row] = stage(
            folder,
            f"evaluate-{boxes}",
            lambda: evaluate(
                config, boxes, segmentor=SEGMENTOR, split=TEST_SPLIT, out_dir=work / "eval" / boxes, run_name=f"demo-{boxes}-{SEGMENTOR}"
            ),
        )
    stage(
        folder,
        "overlays",
        lambda: write_overlays(
            variants[ROW_CONTRA],
            f"mlflow:{runs[ROW_CONTRA]}",
            work / OVERLAYS_FOLDER,
            OVERLAY_VIDEOS,
            SEGMENTOR,
            split=TEST_SPLIT,
            run_id=runs[ROW_CONTRA],
        ),
    )
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
    """The search of a sweep file (``conf/sweep/*.yaml``) as dotted overrides."""
    sweep_section = load_config([path]).sweep
    return {f"sweep.{key}": getattr(sweep_section, key) for key in SWEEP_KEYS}
