"""Shared evaluation fixtures: small RefShapes evaluation shards with masks and tiny-SAM embeddings, scored once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from groprompt.data.embeddings import embed_shard, embedding_identity
from groprompt.data.formats import read_videos
from groprompt.data.manifest import write_manifest
from groprompt.data.refshapes import RefShapesSpec, write_refshapes
from groprompt.data.shards import ShardSettings, plan_shards, write_shard
from groprompt.evaluation.aggregate import merge_partials
from groprompt.evaluation.box_sources import BoxSource, OracleBoxes
from groprompt.evaluation.scoring import evaluate_shard
from groprompt.files import sha256_file
from groprompt.models.frozen import FrozenEncoders
from groprompt.models.sam import FrozenSam
from groprompt.models.text import FrozenTextEncoder
from groprompt.segmentors import build_segmentor

ShardPairs = list[tuple[Path, Path]]


def make_eval_shards(root: Path, max_side: int = 1024) -> tuple[Path, Path]:
    """Three 4-frame 128-pixel RefShapes videos in windows of 2 (two samples per video), with masks and tiny-SAM
    embeddings; manifests as the shard and embed stages write them. Returns (frames dir, embeddings dir)."""
    write_refshapes(
        root / "refshapes",
        RefShapesSpec(videos=3, frames=4, size=128, seed=0, multi_object_share=0.5, leaves_frame_share=0.5),
        valid_fraction=0.25,
        progress=False,
    )
    videos = [v for split in ("train", "valid") for v in read_videos("refshapes", root / "refshapes", split, with_boxes=False)]
    settings = ShardSettings(window=2, max_side=max_side, shard_bytes=40_000, with_masks=True)
    frames_dir, embeddings_dir = root / "frames", root / "embeddings"
    frames_dir.mkdir()
    records = [write_shard(plan, frames_dir, settings) for plan in plan_shards(videos, settings)]
    columns = ("shard", "samples", "n_samples", "n_frames", "bytes", "sha256")
    write_manifest(frames_dir / "manifest.parquet", [{c: r[c] for c in columns} for r in records], {"stage": "shard"})
    sam = FrozenSam.from_name("tiny")
    embeddings_dir.mkdir()
    embedded = [embed_shard(sam, frames_dir / r["shard"], r["sha256"], embeddings_dir, 4)[0] for r in records]
    metadata = {
        "stage": "embed",
        "identity": embedding_identity(sam, "float16"),
        "frames_manifest": {"path": str(frames_dir / "manifest.parquet"), "sha256": sha256_file(frames_dir / "manifest.parquet")},
    }
    write_manifest(embeddings_dir / "manifest.parquet", [{c: r[c] for c in columns} for r in embedded], metadata)
    return frames_dir, embeddings_dir


@pytest.fixture(scope="session")
def make_shards() -> Callable[..., tuple[Path, Path]]:
    """``make_eval_shards(root, max_side=1024)``, for tests that need shards of their own."""
    return make_eval_shards


@pytest.fixture(scope="session")
def shards(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(frames dir, embeddings dir) of the shared evaluation shards."""
    return make_eval_shards(tmp_path_factory.mktemp("eval"))


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


@pytest.fixture(scope="session")
def frozen() -> FrozenEncoders:
    return FrozenEncoders(sam=FrozenSam.from_name("tiny", seed=0), text=FrozenTextEncoder())


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
