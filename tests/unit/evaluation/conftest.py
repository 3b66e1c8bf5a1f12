"""Shared evaluation fixtures: small RefShapes evaluation shards with masks and tiny-SAM embeddings, scored once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from groprompt.evaluation.aggregate import merge_partials
from groprompt.evaluation.box_sources import BoxSource, OracleBoxes
from groprompt.evaluation.scoring import evaluate_shard
from groprompt.models.segmentors import build_segmentor

ShardPairs = list[tuple[Path, Path]]


@pytest.fixture(scope="session")
def shards(make_shards: Callable[..., tuple[Path, Path]], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(frames dir, embeddings dir) of the shared evaluation shards."""
    return make_shards(tmp_path_factory.mktemp("eval"))


@pytest.fixture(scope="session")
def shard_pairs(shards: tuple[Path, Path]) -> ShardPairs:
    """(frame shard, embedding shard) of every shared shard, by name."""
    frames_dir, embeddings_dir = shards
    return [(path, embeddings_dir / path.name) for path in sorted(frames_dir.glob("shard-*.tar"))]


@pytest.fixture(scope="session")
def score_shards(shard_pairs: ShardPairs) -> Callable[..., pd.DataFrame]:
    """``score(box_source, segmentor_name, png_dir=None)``: every shared shard scored, merged per expression."""

    def score(box_source: BoxSource, segmentor: str, png_dir: Path | None = None) -> pd.DataFrame:
        partials = []
        for frames, embeddings in shard_pairs:
            partials += evaluate_shard(frames, embeddings, box_source, build_segmentor(segmentor), png_dir)
        return merge_partials(partials)

    return score


@pytest.fixture(scope="session")
def oracle_box(score_shards: Callable[..., pd.DataFrame]) -> pd.DataFrame:
    """Ground-truth boxes filled as masks."""
    return score_shards(OracleBoxes(), "box")


@pytest.fixture(scope="session")
def oracle_grabcut(score_shards: Callable[..., pd.DataFrame], tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, Path]:
    """Ground-truth boxes through GrabCut, with every frame's mask written as a PNG: (table, PNG folder)."""
    png_dir = tmp_path_factory.mktemp("grabcut") / "png"
    return score_shards(OracleBoxes(), "grabcut", png_dir), png_dir


@pytest.fixture
def partial_row() -> Callable[..., dict[str, Any]]:
    """``partial(video, exp_id, kind, j, samples, dataset)``: a partial row with J = F = ``j`` over one frame and the
    frame samples ``samples``, (intersection, union) pairs."""

    def partial(video: str, exp: str, kind: str | None, j: float, samples: list[tuple[int, int]], dataset: str) -> dict[str, Any]:
        return {
            "video": video,
            "exp_id": exp,
            "dataset": dataset,
            "kind": kind,
            "obj_id": 1,
            "text": "x",
            "j_sum": j,
            "f_sum": j,
            "n_frames": 1.0,
            "box_iou_sum": 0.5,
            "n_box_frames": 1.0,
            "sample_intersections": [i for i, _ in samples],
            "sample_unions": [u for _, u in samples],
        }

    return partial
