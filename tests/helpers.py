"""Helpers that several test modules share (fixtures live in conftest.py files)."""

from __future__ import annotations

import importlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import torch
from torch import nn

from groprompt.checkpoints import CHECKPOINT_FILE
from groprompt.config import Config, replace
from groprompt.evaluation.report import ROW_BOX_ONLY, ROW_CONTRA, oracle_row
from groprompt.files import Location

if TYPE_CHECKING:
    from groprompt.data.records import Video
    from groprompt.models.sam import FrozenSam

REPO_ROOT = Path(__file__).resolve().parents[1]
DAVIS_VIDEOS = ("blackswan", "libby")


def save_pretrained(model: Any, processor: Any, folder: Path) -> Path:
    """``folder`` holding a ``transformers`` model and its processor in ``save_pretrained`` layout."""
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def shared_data_dir() -> Path:
    """``../shared/data`` beside the checkout (override with GROPROMPT_SHARED_DATA)."""
    return Path(os.environ.get("GROPROMPT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def mini_davis(shared_data: Path, tmp_path: Path, videos: tuple[str, ...] = DAVIS_VIDEOS) -> Path:
    """A copy of some ref-davis-mini videos in the Ref-DAVIS17 layout (so tests may damage it)."""
    source = shared_data / "ref-davis-mini"
    root = tmp_path / "davis"
    meta = json.loads((source / "meta_expressions/valid/meta_expressions.json").read_text())
    meta["videos"] = {v: meta["videos"][v] for v in videos}
    (root / "meta_expressions/valid").mkdir(parents=True)
    (root / "meta_expressions/valid/meta_expressions.json").write_text(json.dumps(meta))
    for video in videos:
        for kind in ("JPEGImages", "Annotations"):
            shutil.copytree(source / "valid" / kind / video, root / "valid" / kind / video)
    return root


@contextmanager
def restored_mlflow_globals() -> Iterator[None]:
    """``start_run`` sets MLflow's process-wide tracking URI and active experiment (and their environment variables):
    put them back so that later tests do not log into this module's deleted store."""
    import mlflow

    fluent = importlib.import_module("mlflow.tracking.fluent")
    saved_env = {name: os.environ.get(name) for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID")}
    saved_experiment = getattr(fluent, "_active_experiment_id", None)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved_env["MLFLOW_TRACKING_URI"])  # None unsets it
        fluent._active_experiment_id = saved_experiment
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def empty_store(tmp_path_factory: pytest.TempPathFactory, folder: Path) -> str:
    """A migrated, empty SQLite store in ``folder``: copied from one made once per session (migrations take seconds)."""
    import mlflow

    template = tmp_path_factory.getbasetemp() / "mlflow-template" / "mlflow.db"
    if not template.exists():
        template.parent.mkdir(exist_ok=True)
        mlflow.MlflowClient(f"sqlite:///{template}").search_experiments()
    shutil.copyfile(template, folder / "mlflow.db")
    return f"sqlite:///{folder / 'mlflow.db'}"


SIZES = [  # frame sizes (h, w) the SAM tests use
    (200, 300),
    (300, 200),
    (256, 256),
    (90, 120),
]
BOXES = np.array([[10, 20, 110, 150], [0, 0, 80, 40], [35.5, 12.25, 88.0, 89.75]])


def random_frame(height: int, width: int, seed: int) -> np.ndarray:
    """Smooth random RGB frame: a small random image upsampled, plus noise."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (8, 8, 3))
    ys, xs = np.linspace(0, 7, height).round().astype(int), np.linspace(0, 7, width).round().astype(int)
    frame = coarse[ys][:, xs] + rng.normal(0, 20, (height, width, 3))
    return frame.clip(0, 255).astype(np.uint8)


def make_frame_shards(out: Path) -> list[dict]:
    """Four 6-frame 128-pixel RefShapes videos in windows of 4 (samples of 4 and 2 frames), several shards."""
    from groprompt.data.formats import read_videos
    from groprompt.data.refshapes import RefShapesSpec, write_refshapes
    from groprompt.data.shards import ShardSettings, plan_shards, write_shard

    write_refshapes(out / "refshapes", RefShapesSpec(videos=4, frames=6, size=128, seed=3), valid_fraction=0.25, progress=False)
    videos = list(read_videos("refshapes", out / "refshapes", "train", with_boxes=False))
    settings = ShardSettings(window=4, shard_bytes=60_000)
    (out / "frames").mkdir()
    return [write_shard(plan, out / "frames", settings) for plan in plan_shards(videos, settings)]


# Evaluation summaries as the report reads them (values in [0, 1])
RESULTS = {
    ROW_BOX_ONLY: {
        "box_iou": 0.732,
        "JF": 0.698,
        "J": 0.670,
        "F": 0.727,
        "by_kind": {"motion": {"box_iou": 0.5, "JF": 0.4, "J": 0.3, "F": 0.5, "n_expressions": 3}},
    },
    ROW_CONTRA: {
        "box_iou": 0.744,
        "JF": 0.706,
        "J": 0.678,
        "F": 0.733,
        "by_kind": {"motion": {"box_iou": 0.6, "JF": 0.5, "J": 0.4, "F": 0.6, "n_expressions": 3}},
    },
    oracle_row("sam"): {
        "box_iou": 1.0,
        "JF": 0.836,
        "J": 0.801,
        "F": 0.872,
        "by_kind": {"motion": {"box_iou": 1.0, "JF": 0.9, "J": 0.85, "F": 0.95, "n_expressions": 3}},
    },
}


@contextmanager
def tracked_config(tmp_path_factory: pytest.TempPathFactory, experiment: str, base: Config) -> Iterator[Config]:
    """``base`` logging to a fresh SQLite store whose ``experiment`` keeps its artifacts in tmp; MLflow's globals
    are restored afterwards."""
    from mlflow import MlflowClient

    folder = tmp_path_factory.mktemp(experiment)
    with restored_mlflow_globals():
        uri = empty_store(tmp_path_factory, folder)
        MlflowClient(uri).create_experiment(experiment, artifact_location=(folder / "artifacts").as_uri())
        yield replace(base, **{"runtime.tracking_uri": uri, "runtime.experiment": experiment})


def save_tiny_grounding_dino(folder: Path, seed: int = 0) -> Path:
    """A tiny random Grounding DINO (Swin of two stages, one-layer BERT with the packaged MiniLM's uncased WordPiece
    vocabulary, d_model 32, one encoder and two decoder layers, 8 queries) saved as a pretrained one is: config,
    weights, tokenizer and image processor in ``folder``."""
    import torch
    from transformers import (
        AutoTokenizer,
        BertConfig,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        SwinConfig,
    )

    from groprompt.models.text import default_text_encoder_path

    tokenizer = AutoTokenizer.from_pretrained(default_text_encoder_path())
    config = GroundingDinoConfig(
        backbone_config=SwinConfig(
            embed_dim=16, depths=[1, 1, 1], num_heads=[1, 2, 2], window_size=4, out_features=["stage2", "stage3"], image_size=64
        ),
        text_config=BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64),
        d_model=32,
        encoder_layers=1,
        decoder_layers=2,
        num_queries=8,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        num_feature_levels=2,
        encoder_n_points=2,
        decoder_n_points=2,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        GroundingDinoForObjectDetection(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    GroundingDinoImageProcessor().save_pretrained(folder)
    return folder


def shard_and_embed(
    data: Path,
    split: str,
    shards: Location,
    embeddings: Location,
    sam: FrozenSam,
    window: int = 4,
    max_side: int = 128,
    shard_bytes: int = 60_000,
) -> None:
    """What the shard and embed stages do for one RefShapes split, in this process (by default small shards of about
    two videos each; "valid" shards carry masks)."""
    from groprompt.data.shards import ShardSettings
    from groprompt.data.stage_outputs import embed_here, shard_here

    settings = ShardSettings(window=window, max_side=max_side, shard_bytes=shard_bytes, with_masks=split == "valid")
    shard_here("refshapes", data, split, shards / split, settings)
    embed_here(shards / split, embeddings / split, sam, batch_size=4)


class FakeSession:
    """Rank 0 of 1 on the CPU: resumes from ``payload``, and keeps every report and a copy of its checkpoint file."""

    rank = 0
    world = 1
    device = torch.device("cpu")

    def __init__(self, store: Path, payload: dict[str, Any] | None = None) -> None:
        self.store = store
        self.payload = payload
        self.reports: list[dict[str, float]] = []
        self.folders: list[str | None] = []
        self.checkpoints: dict[int, Path] = {}
        self.prepared: list[nn.Module] = []

    def latest_checkpoint(self) -> dict[str, Any] | None:
        return self.payload

    def prepare(self, model: nn.Module) -> nn.Module:
        self.prepared.append(model)
        return model

    def report(self, metrics: dict[str, float], checkpoint_folder: str | None) -> None:
        self.reports.append(dict(metrics))
        self.folders.append(checkpoint_folder)
        if checkpoint_folder is not None:  # the folder is temporary: keep a copy of its file
            kept = self.store / f"epoch-{int(metrics['epoch'])}"
            kept.mkdir(parents=True)
            shutil.copy(Path(checkpoint_folder) / CHECKPOINT_FILE, kept / CHECKPOINT_FILE)
            self.checkpoints[int(metrics["epoch"])] = kept


def train(config: Config, session: FakeSession) -> FakeSession:
    """``run_training`` without leaving its seed or thread count behind for other tests."""
    from groprompt.training.loop import run_training

    threads = torch.get_num_threads()
    try:
        with torch.random.fork_rng(devices=[]):
            run_training(config, session, run_id=None)
    finally:
        torch.set_num_threads(threads)
    return session


def registered_epochs(run_folder: Location) -> list[int]:
    """Epochs of the checkpoints Ray Train has registered for a training run, oldest first."""
    from groprompt.stages.sessions import registered_checkpoints

    return sorted(int(metrics["epoch"]) for metrics in (registered_checkpoints(run_folder) or {}).values())


def image_member_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the frame-shard image members (``.jpg``, ``.png``) whose bytes are read from now on; the
    embedding shards, which import ``iter_members`` by name, are not watched."""
    from groprompt.data import shards

    reads: list[str] = []
    members = shards.iter_members

    def counted(name: str, read: Callable[[], bytes]) -> Callable[[], bytes]:
        def read_and_count() -> bytes:
            reads.append(name)
            return read()

        return read_and_count

    def watched(path: Path, sha256: str | None = None) -> Iterator[tuple[str, str, Callable[[], bytes]]]:
        for key, extension, read in members(path, sha256):
            image = extension.endswith((".jpg", ".png"))
            yield key, extension, counted(f"{key}.{extension}", read) if image else read

    monkeypatch.setattr(shards, "iter_members", watched)
    return reads


def upload_tree(folder: Path, target: str) -> None:
    """Every file under ``folder`` to the prefix ``target`` (``s3://bucket/prefix``), keeping relative paths."""
    import boto3

    bucket, _, prefix = target.removeprefix("s3://").partition("/")
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        boto3.client("s3").upload_file(str(file), bucket, f"{prefix}/{file.relative_to(folder).as_posix()}")


def assert_same_videos(remote: list[Video], local: list[Video]) -> None:
    """The videos read from a bucket are those read from disk: ids, splits, frame names, sizes, expressions, boxes,
    and every frame and mask (where the reader gives them)."""

    def fields(videos: list[Video]) -> list[tuple[Any, ...]]:
        return [(v.video_id, v.split, v.frame_names, v.height, v.width, v.expressions, v.boxes) for v in videos]

    assert fields(remote) == fields(local)
    for near, far in zip(local, remote):
        assert (far.frames is None) == (near.frames is None) and (far.masks is None) == (near.masks is None)
        for t in range(len(near.frame_names)):
            if near.frames is not None:
                assert np.array_equal(far.frames.read(t), near.frames.read(t)), t
            if near.masks is not None:
                assert np.array_equal(far.masks.read(t), near.masks.read(t)), t  # None where a frame has no mask


def bucket_contents(name: str) -> dict[str, bytes]:
    """Every object in the bucket, by key."""
    import boto3

    s3 = boto3.client("s3")
    keys = [item["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name) for item in page.get("Contents", [])]
    return {key: s3.get_object(Bucket=name, Key=key)["Body"].read() for key in keys}
