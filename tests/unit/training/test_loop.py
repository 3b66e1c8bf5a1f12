"""``run_training`` without Ray: a fake session on a tiny sharded, embedded RefShapes set.

One report (and one checkpoint) per epoch; a run resumed from a checkpoint reports only the epochs left and ends
where the uninterrupted run ended; more workers than clips is a DataError; validation scores as evaluation does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from groprompt.checkpoints import build_trained_model, load_trained, read_payload
from groprompt.config import Config, ModelConfig, replace, to_dict
from groprompt.data.batches import ClipBatch
from groprompt.data.manifest import MANIFEST, read_manifest
from groprompt.data.refshapes import RefShapesSpec, write_refshapes
from groprompt.data.shard_pairs import metadata_of, shard_pairs
from groprompt.errors import DataError
from groprompt.evaluation.aggregate import merge_partials
from groprompt.evaluation.box_sources import ModelBoxes
from groprompt.evaluation.scoring import evaluate_shard
from groprompt.files import location
from groprompt.models.frozen import FrozenEncoders, build_frozen
from groprompt.models.groprompt import GroPrompt
from groprompt.models.sam import FrozenSam
from groprompt.models.segmentors import build_segmentor
from groprompt.training import loop as training
from tests.helpers import FakeSession, shard_and_embed, train

MODEL = ModelConfig(sam="tiny", d_model=32, decoder_layers=2, num_heads=2, ffn_dim=64, num_queries=6)
EPOCHS = 3
LOSSES = ("loss_total", "loss_l1", "loss_giou", "loss_conf", "loss_select", "loss_aux", "loss_textcon", "loss_modalcon")


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
    # the weights change from one epoch to the next, and the checkpoint holds the model that was prepared (in its
    # TrainingStep, the module DDP wraps)
    first, last = payloads[0]["model"], payloads[-1]["model"]
    assert any(not torch.equal(first[name], last[name]) for name in first)
    prepared = uninterrupted.prepared[0].model.state_dict()
    assert set(prepared) == set(last) and all(torch.equal(prepared[name], last[name]) for name in last)


def test_a_resumed_run_reports_the_remaining_epochs_and_ends_where_the_uninterrupted_run_ended(
    config: Config, uninterrupted: FakeSession, tmp_path: Path
) -> None:
    payload = read_payload(uninterrupted.checkpoints[1])
    resumed = train(config, FakeSession(tmp_path, payload=payload))
    assert [report["epoch"] for report in resumed.reports] == list(range(2, EPOCHS))
    final, reference = resumed.reports[-1], uninterrupted.reports[-1]
    for name in (*LOSSES, "val_box_iou"):
        assert final[name] == reference[name], name
    resumed_state = read_payload(resumed.checkpoints[EPOCHS - 1])["model"]
    reference_state = read_payload(uninterrupted.checkpoints[EPOCHS - 1])["model"]
    for name, value in reference_state.items():
        assert torch.equal(resumed_state[name], value), name


def test_a_run_resumed_after_the_last_epoch_reports_nothing(config: Config, uninterrupted: FakeSession, tmp_path: Path) -> None:
    payload = read_payload(uninterrupted.checkpoints[EPOCHS - 1])
    assert train(config, FakeSession(tmp_path, payload=payload)).reports == []


def test_more_workers_than_training_clips_is_a_data_error(config: Config, tmp_path: Path) -> None:
    session = FakeSession(tmp_path)
    session.world = 10_000
    with pytest.raises(DataError, match=r"training clips for 10000 workers: every worker needs one; lower train.num_workers"):
        train(config, session)
    assert session.reports == [] and session.prepared == []


def test_validation_reports_evaluation_box_iou_the_mean_over_expressions(config: Config, uninterrupted: FakeSession) -> None:
    """``val_box_iou`` is evaluation's ``box_iou`` of the same weights (a video is one shard sample here, so the
    online clip and the online stream see the same frames): the mean over expressions, not over frames."""
    frozen = build_frozen(config.model)
    _, model = build_trained_model(config.model, load_trained(uninterrupted.checkpoints[EPOCHS - 1], ""), frozen)
    shards = Path(config.data.shards) / "valid"
    rows = [
        row
        for path in sorted(shards.glob("*.tar"))
        for row in evaluate_shard(
            path, Path(config.data.embeddings) / "valid" / path.name, ModelBoxes(model, frozen), build_segmentor("box")
        )
    ]
    table = merge_partials(rows)
    per_expression = table["box_iou"].dropna()
    assert len(per_expression) > 1
    assert uninterrupted.reports[-1]["val_box_iou"] == pytest.approx(float(per_expression.mean()), abs=1e-6)


class CpuZeroSession(FakeSession):
    """The CPU under a name of its own (``cpu:0``), to tell the session's device from the default one."""

    device = torch.device("cpu", 0)


def test_encoders_model_batches_and_validation_go_to_the_session_device(
    config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    moved: list[tuple[str, torch.device]] = []

    def recorded(name: str, to: Callable[..., Any]) -> Callable[..., Any]:
        def record(self: Any, device: torch.device | str) -> Any:
            moved.append((name, torch.device(device)))
            return to(self, device)

        return record

    monkeypatch.setattr(FrozenEncoders, "to", recorded("frozen", FrozenEncoders.to))
    monkeypatch.setattr(GroPrompt, "to", recorded("model", torch.nn.Module.to))
    monkeypatch.setattr(ClipBatch, "to", recorded("batch", ClipBatch.to))
    validate = training.validation_iou
    monkeypatch.setattr(training, "validation_iou", lambda *args: moved.append(("validation", args[-1])) or validate(*args))
    session = train(replace(config, **{"train.epochs": 1}), CpuZeroSession(tmp_path))
    assert len(session.reports) == 1
    names = [name for name, _ in moved]
    assert names[:2] == ["frozen", "model"] and names[-1] == "validation"
    pairs = shard_pairs(config.data, "train", FrozenSam.from_name(MODEL.sam, seed=MODEL.sam_seed))
    clips = sum(  # clips of 4 frames (the whole sample) whose sentence's object is in one of them; batches of 4
        any(box is not None for box in meta["boxes"].get(str(e["obj_id"]), [])) for meta in metadata_of(pairs) for e in meta["expressions"]
    )
    assert names[2:-1] == ["batch"] * math.ceil(clips / 4)  # every batch of the epoch, the last one partial
    assert {device for _, device in moved} == {torch.device("cpu", 0)}


@pytest.mark.slow
def test_training_on_shards_and_embeddings_in_a_bucket_matches_the_run_on_local_disk(
    config: Config, uninterrupted: FakeSession, bucket: str, tmp_path: Path
) -> None:
    sam = FrozenSam.from_name(MODEL.sam, seed=MODEL.sam_seed)
    store = location(bucket)
    for split in ("train", "valid"):
        shard_and_embed(Path(config.data.root), split, store / "shards", store / "embeddings", sam)
        for stage in ("shards", "embeddings"):  # the same files as on disk, written to the bucket
            local, _ = read_manifest(Path(getattr(config.data, stage)) / split / MANIFEST)
            remote, _ = read_manifest(store / stage / split / MANIFEST)
            assert [(r["shard"], r["sha256"]) for r in remote] == [(r["shard"], r["sha256"]) for r in local]
    in_bucket = replace(config, **{"data.shards": f"{bucket}/shards", "data.embeddings": f"{bucket}/embeddings"})
    session = train(in_bucket, FakeSession(tmp_path))
    assert session.reports == uninterrupted.reports
    state, reference = (read_payload(s.checkpoints[EPOCHS - 1])["model"] for s in (session, uninterrupted))
    assert all(torch.equal(state[name], value) for name, value in reference.items())
