"""What the RefShapes learning benchmarks share: a generated set sharded and embedded in this process, the training
loop run without Ray, and held-out box IoU per expression type beside the sentence-blind reference."""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from groprompt.boxes import box_iou
from groprompt.config import Config, load_config, with_absolute_paths
from groprompt.data.refshapes import RefShapesSpec, write_refshapes
from groprompt.data.shard_pairs import shard_pairs
from groprompt.data.shards import ShardSettings, read_shard
from groprompt.data.stage_outputs import embed_here, shard_here
from groprompt.data.targets import referring_expressions
from groprompt.evaluation.aggregate import merge_partials, summarize
from groprompt.evaluation.box_sources import BoxSource, SentenceBlindBoxes, ground_truth_boxes
from groprompt.evaluation.scoring import evaluate_shards
from groprompt.models.frozen import build_frozen
from groprompt.models.groprompt import GroPrompt
from groprompt.models.sam import FrozenSam
from groprompt.models.segmentors import BoxSegmentor
from groprompt.training.loop import expression_box_ious

REPO = Path(__file__).resolve().parents[1]


def refshapes_parser(description: str | None, seed: int, videos: int) -> argparse.ArgumentParser:
    """The arguments every RefShapes learning benchmark takes: ``--seed``, ``--videos``, ``--frames``, ``--threads``
    and ``key=value`` overrides on ``conf/demo.yaml``."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=seed, help="RefShapes seed")
    parser.add_argument("--videos", type=int, default=videos, help="RefShapes videos to generate (10%% held out)")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("overrides", nargs="*", help="key=value configuration overrides (on conf/demo.yaml)")
    return parser


def work_config(work: Path, threads: int, overrides: list[str]) -> Config:
    """``conf/demo.yaml`` with its data under ``work``, RefShapes' own ``valid`` as the held-out split, ``threads``
    torch threads, then ``overrides``."""
    paths = {"data.root": work / "data", "data.shards": work / "shards", "data.embeddings": work / "embeddings"}
    fixed = [f"train.cpus_per_worker={threads}", "data.split=train", "data.val_split=valid"]
    return with_absolute_paths(load_config([REPO / "conf" / "demo.yaml"], [f"{k}={v}" for k, v in paths.items()] + fixed + overrides))


def prepare_refshapes(
    config: Config, spec: RefShapesSpec, valid_fraction: float, sam: FrozenSam | None = None, also: tuple[str, ...] = ()
) -> dict[str, list[str]]:
    """Generate RefShapes at ``config.data.root`` and shard and embed its training and validation splits and the
    splits ``also`` (masks in all but the training shards) with ``sam`` (the configured SAM when None); returns the
    video ids per generated split."""
    splits = write_refshapes(config.data.root, spec, valid_fraction=valid_fraction, progress=False)
    sam = sam or FrozenSam.from_name(config.model.sam, seed=config.model.sam_seed)
    for split in (config.data.split, config.data.val_split, *also):
        settings = ShardSettings(window=config.data.window, max_side=config.data.max_side, with_masks=split != config.data.split)
        shard_here("refshapes", config.data.root, split, Path(config.data.shards) / split, settings)
        embed_here(Path(config.data.shards) / split, Path(config.data.embeddings) / split, sam, 16, config.data.embed_dtype)
    return splits


class PlainSession:
    """Rank 0 of 1 on the CPU, no resume; keeps the trained model and the reported metrics (``run_training``'s session)."""

    rank = 0
    world = 1
    device = torch.device("cpu")

    def __init__(self) -> None:
        self.reports: list[dict[str, float]] = []
        self.model: GroPrompt | None = None

    def latest_checkpoint(self) -> None:
        return None

    def prepare(self, model: GroPrompt) -> GroPrompt:
        self.model = model
        return model

    def report(self, metrics: dict[str, float], checkpoint_folder: str | None) -> None:
        self.reports.append(dict(metrics))


def by_kind(scores: list[tuple[str, float]]) -> dict[str, float]:
    """Mean per expression type, and over all expressions (``all``), of (type, score) pairs."""
    grouped: dict[str, list[float]] = defaultdict(list)
    for kind, score in scores:
        grouped[kind].append(score)
        grouped["all"].append(score)
    return {kind: statistics.fmean(values) for kind, values in grouped.items()}


def model_box_iou(config: Config, model: GroPrompt) -> dict[str, float]:
    """Held-out box IoU of the model by expression type, each expression scored as validation and evaluation do."""
    frozen = build_frozen(config.model)
    pairs = shard_pairs(config.data, config.data.val_split, frozen.sam)
    return by_kind(list(expression_box_ious(model, frozen, pairs, None, torch.device("cpu")).values()))


def box_mask_scores(config: Config, box_source: BoxSource) -> dict[str, dict[str, float]]:
    """Held-out J and box IoU by expression type (``by_kind``, plus ``all``) of ``box_source``'s boxes filled as masks,
    scored by the evaluation's own protocol (``evaluate_shards``: online over whole videos)."""
    pairs = shard_pairs(config.data, config.data.val_split, build_frozen(config.model).sam)
    summary = summarize(merge_partials(evaluate_shards([(p.frames, p.embeddings) for p in pairs], box_source, BoxSegmentor())))
    kinds = {kind: {"J": means["J"], "box_iou": means["box_iou"]} for kind, means in summary["by_kind"].items()}
    return {**kinds, "all": {"J": summary["J"], "box_iou": summary["box_iou"]}}


def sentence_blind_box_iou(config: Config) -> dict[str, float]:
    """Held-out box IoU by expression type of the sentence-blind reference (``SentenceBlindBoxes``: per frame, a random
    present object's ground-truth box, whatever the sentence says): each expression's mean over its present frames."""
    scores = []
    for frames in sorted((Path(config.data.shards) / config.data.val_split).glob("*.tar")):
        for sample in read_shard(frames, with_images=False):
            expressions = referring_expressions(sample.meta)
            if not expressions:
                continue
            drawn = SentenceBlindBoxes().prompts(sample.meta, expressions, None).union_boxes()
            for row, expression in enumerate(expressions):
                truth = ground_truth_boxes(sample.meta, expression["obj_id"])
                present = np.isfinite(truth).all(axis=1)
                if present.any():
                    iou = box_iou(torch.from_numpy(drawn[row][present]), torch.from_numpy(truth[present]))
                    scores.append((expression["kind"], float(iou.mean())))
    return by_kind(scores)
