"""``run_training`` without Ray: a fake session on a tiny sharded, embedded RefShapes set.

One report (and one checkpoint) per epoch; a run resumed from a checkpoint reports only the epochs left and ends
where the uninterrupted run ended; a batch larger than the data is a DataError.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import groprompt
from groprompt.checkpoints import CHECKPOINT_FILE, read_payload
from groprompt.config import Config, ModelConfig, replace, to_dict
from groprompt.data.embeddings import embed_shard
from groprompt.data.formats import read_videos
from groprompt.data.manifest import MANIFEST, write_manifest
from groprompt.data.refshapes import RefShapesSpec, write_refshapes
from groprompt.data.shards import ShardSettings, plan_shards, write_shard
from groprompt.errors import DataError
from groprompt.files import sha256_file
from groprompt.models.sam import FrozenSam
from groprompt.training import run_training

MODEL = ModelConfig(sam="tiny", d_model=32, decoder_layers=2, num_heads=2, ffn_dim=64, num_queries=6)
MANIFEST_COLUMNS = ("shard", "samples", "n_samples", "n_frames", "bytes", "sha256")  # as the shard and embed stages write
EPOCHS = 3
LOSSES = ("loss_total", "loss_l1", "loss_giou", "loss_conf", "loss_select", "loss_aux", "loss_textcon", "loss_modalcon")


def shard_and_embed(data: Path, split: str, shards: Path, embeddings: Path, sam: FrozenSam) -> None:
    """What the shard and embed stages do for one split, with the library functions and no Ray."""
    settings = ShardSettings(window=4, max_side=128, shard_bytes=60_000, with_masks=split == "valid")  # about two videos a shard
    videos = list(read_videos("refshapes", data, split, with_boxes=False))
    frames_dir = shards / split
    frames_dir.mkdir(parents=True)
    records = [write_shard(plan, frames_dir, settings) for plan in plan_shards(videos, settings)]
    metadata = {
        "stage": "shard",
        "format": "refshapes",
        "dataset": videos[0].dataset,
        "split": videos[0].split,
        "root": str(data),
        "settings": asdict(settings),
        "rejected": [],
        "version": groprompt.__version__,
    }
    write_manifest(frames_dir / MANIFEST, [{c: r[c] for c in MANIFEST_COLUMNS} for r in records], metadata)

    out = embeddings / split
    out.mkdir(parents=True)
    embedded = [embed_shard(sam, frames_dir / r["shard"], r["sha256"], out, 4, "float16")[0] for r in records]
    metadata = {
        "stage": "embed",
        "identity": embedded[0]["identity"],
        "frames_manifest": {"path": str(frames_dir / MANIFEST), "sha256": sha256_file(frames_dir / MANIFEST)},
        "version": groprompt.__version__,
    }
    write_manifest(out / MANIFEST, [{c: r[c] for c in MANIFEST_COLUMNS} for r in embedded], metadata)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Config:
    """Six 4-frame RefShapes videos (4 train, 2 valid), sharded and embedded with the tiny SAM; a tiny model on them."""
    root = tmp_path_factory.mktemp("training")
    write_refshapes(root / "data", RefShapesSpec(videos=6, frames=4, size=128, seed=0), valid_fraction=0.34, progress=False)
    sam = FrozenSam.from_name(MODEL.sam, seed=MODEL.sam_seed)
    for split in ("train", "valid"):
        shard_and_embed(root / "data", split, root / "shards", root / "embeddings", sam)
    return replace(
        Config(),
        model=to_dict(MODEL),
        **{
            "data.root": str(root / "data"),
            "data.shards": str(root / "shards"),
            "data.embeddings": str(root / "embeddings"),
            "data.clip_len": 4,
            "train.epochs": EPOCHS,
            "train.batch_size": 4,
            "train.cpus_per_worker": 2.0,
        },
    )


class FakeSession:
    """Rank 0 of 1: resumes from ``payload``, and keeps every report and a copy of its checkpoint file."""

    rank = 0
    world = 1

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
    threads = torch.get_num_threads()
    try:
        with torch.random.fork_rng(devices=[]):
            run_training(config, session, run_id=None)
    finally:
        torch.set_num_threads(threads)
    return session


@pytest.fixture(scope="module")
def uninterrupted(config: Config, tmp_path_factory: pytest.TempPathFactory) -> FakeSession:
    return train(config, FakeSession(tmp_path_factory.mktemp("uninterrupted")))


def test_one_report_per_epoch_with_finite_losses(uninterrupted: FakeSession) -> None:
    assert [report["epoch"] for report in uninterrupted.reports] == list(range(EPOCHS))
    for report in uninterrupted.reports:
        assert set(report) == {*LOSSES, "val_box_iou", "epoch"}
        assert all(math.isfinite(report[name]) for name in LOSSES), report
        assert report["loss_total"] > 0
        assert 0.0 <= report["val_box_iou"] <= 1.0
    assert len(uninterrupted.prepared) == 1


def test_each_report_carries_a_temporary_checkpoint_of_its_epoch(uninterrupted: FakeSession) -> None:
    assert all(folder is not None for folder in uninterrupted.folders)
    assert len(set(uninterrupted.folders)) == EPOCHS
    assert not any(Path(folder).exists() for folder in uninterrupted.folders if folder)  # removed after the report
    payloads = [read_payload(uninterrupted.checkpoints[epoch]) for epoch in range(EPOCHS)]
    assert [payload["epoch"] for payload in payloads] == list(range(EPOCHS))
    assert set(payloads[0]) == {"model", "optimizer", "scheduler", "epoch", "torch_rng"}
    # the learning-rate schedule advances by the same number of steps every epoch
    steps = payloads[0]["scheduler"]["last_epoch"]
    assert steps > 0
    assert [payload["scheduler"]["last_epoch"] for payload in payloads] == [steps * (epoch + 1) for epoch in range(EPOCHS)]
    # the weights change from one epoch to the next, and the checkpoint holds the model that was prepared
    first, last = payloads[0]["model"], payloads[-1]["model"]
    assert any(not torch.equal(first[name], last[name]) for name in first)
    prepared = uninterrupted.prepared[0].state_dict()
    assert set(prepared) == set(last) and all(torch.equal(prepared[name], last[name]) for name in last)


def test_a_resumed_run_reports_the_remaining_epochs_and_ends_where_the_uninterrupted_run_ended(
    config: Config, uninterrupted: FakeSession, tmp_path: Path
) -> None:
    payload = read_payload(uninterrupted.checkpoints[1])
    resumed = train(config, FakeSession(tmp_path, payload=payload))
    assert [report["epoch"] for report in resumed.reports] == list(range(2, EPOCHS))
    final, reference = resumed.reports[-1], uninterrupted.reports[-1]
    for name in (*LOSSES, "val_box_iou"):
        assert final[name] == pytest.approx(reference[name], rel=1e-6, abs=1e-6), name
    resumed_state = read_payload(resumed.checkpoints[EPOCHS - 1])["model"]
    reference_state = read_payload(uninterrupted.checkpoints[EPOCHS - 1])["model"]
    for name, value in reference_state.items():
        assert torch.allclose(resumed_state[name], value, rtol=1e-6, atol=1e-6), name


def test_a_run_resumed_after_the_last_epoch_reports_nothing(config: Config, uninterrupted: FakeSession, tmp_path: Path) -> None:
    payload = read_payload(uninterrupted.checkpoints[EPOCHS - 1])
    assert train(config, FakeSession(tmp_path, payload=payload)).reports == []


def test_a_batch_larger_than_the_training_clips_is_a_data_error(config: Config, tmp_path: Path) -> None:
    session = FakeSession(tmp_path)
    with pytest.raises(DataError, match="train.batch_size"):
        train(replace(config, **{"train.batch_size": 10_000}), session)
    assert session.reports == [] and session.prepared == []
