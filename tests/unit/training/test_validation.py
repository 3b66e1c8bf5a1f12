"""Training refuses what would make ``val_box_iou`` meaningless: no training split, a test split, no validation boxes.

The shards are tiny RefShapes videos written, sharded and embedded with the library functions (no Ray); the
validation videos lose their object ids (like Ref-YouTube-VOS valid) or their masks.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from groprompt.config import Config, ModelConfig, load_config, replace, to_dict
from groprompt.data.refshapes import RefShapesSpec, write_refshapes
from groprompt.data.shard_pairs import shard_pairs
from groprompt.data.shards import read_shard
from groprompt.errors import ConfigError, DataError
from groprompt.models.sam import FrozenSam
from groprompt.stages.sweep import sweep
from groprompt.stages.train import train
from groprompt.training.loop import require_validation_boxes, run_training
from tests.helpers import REPO_ROOT, shard_and_embed

MODEL = ModelConfig(sam="tiny", d_model=32, decoder_layers=2, num_heads=2, ffn_dim=64, num_queries=6)


def without_object_ids(data: Path) -> None:
    """The valid expressions lose their object ids, as in the Ref-YouTube-VOS valid meta."""
    meta = data / "meta_expressions" / "valid" / "meta_expressions.json"
    content = json.loads(meta.read_text())
    for video in content["videos"].values():
        for expression in video["expressions"].values():
            expression.pop("obj_id")
    meta.write_text(json.dumps(content))


def one_box_only(data: Path) -> None:
    """Validation keeps one video, and of it only the expressions about object 1, whose mask survives in frame 0
    alone (every other pixel of every valid mask is erased): one box, in one frame, for three expressions."""
    meta = data / "meta_expressions" / "valid" / "meta_expressions.json"
    content = json.loads(meta.read_text())
    video = min(content["videos"])
    entry = content["videos"][video]
    entry["expressions"] = {key: e for key, e in entry["expressions"].items() if e["obj_id"] == "1"}
    content["videos"] = {video: entry}
    meta.write_text(json.dumps(content))
    for t, name in enumerate(entry["frames"]):
        path = data / "valid" / "Annotations" / video / f"{name}.png"
        image = Image.open(path)
        ids = np.array(image)
        kept = Image.fromarray(np.where((ids == 1) & (t == 0), ids, 0).astype(np.uint8), mode="P")
        kept.putpalette(image.getpalette())
        kept.save(path)


def without_masks(data: Path) -> None:
    """The valid videos lose their masks: every box is None."""
    shutil.rmtree(data / "valid" / "Annotations")


@pytest.fixture(scope="module")
def sam() -> FrozenSam:
    return FrozenSam.from_name(MODEL.sam, seed=MODEL.sam_seed)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four 4-frame RefShapes videos, two of them valid."""
    root = tmp_path_factory.mktemp("refshapes") / "data"
    write_refshapes(root, RefShapesSpec(videos=4, frames=4, size=128, seed=0), valid_fraction=0.5, progress=False)
    return root


def sharded(source: Path, folder: Path, sam: FrozenSam, damage: Callable[[Path], None] | None = None) -> Config:
    """A copy of ``source`` (its valid videos damaged), sharded and embedded under ``folder``; a config on it."""
    data = folder / "data"
    shutil.copytree(source, data)
    if damage is not None:
        damage(data)
    for split in ("train", "valid"):
        shard_and_embed(data, split, folder / "shards", folder / "embeddings", sam)
    changes = {
        "data.root": str(data),
        "data.shards": str(folder / "shards"),
        "data.embeddings": str(folder / "embeddings"),
        "train.epochs": 1,
        "train.batch_size": 1,
        "train.cpus_per_worker": 1.0,
    }
    return replace(Config(), model=to_dict(MODEL), **changes)


class RefusingSession:
    """Rank 0 of 1 that fails the test if training gets as far as preparing a model or reporting."""

    rank = 0
    world = 1
    device = torch.device("cpu")

    def latest_checkpoint(self) -> None:
        return None

    def prepare(self, model: nn.Module) -> nn.Module:
        pytest.fail("training started")

    def report(self, metrics: dict[str, float], checkpoint_folder: str | None) -> None:
        pytest.fail("training reported")


@pytest.mark.parametrize("damage", [without_object_ids, without_masks])
def test_validation_shards_without_boxes_are_refused_before_the_first_epoch(
    source: Path, sam: FrozenSam, tmp_path: Path, damage: Callable[[Path], None]
) -> None:
    config = sharded(source, tmp_path, sam, damage)
    with pytest.raises(DataError, match="has no referring expression with a box") as error:
        run_training(config, RefusingSession(), run_id=None)
    assert str(tmp_path / "shards" / "valid") in str(error.value) and "\n" not in str(error.value)


def test_validation_shards_with_a_single_box_pass(source: Path, sam: FrozenSam, tmp_path: Path) -> None:
    """The check refuses only shards with no box at all: one box of one object in one frame is enough."""
    config = sharded(source, tmp_path, sam, one_box_only)
    pairs = shard_pairs(config.data, "valid", sam)
    boxed = {  # read from the shards' JSON by hand: (video, expression, frame) with a ground-truth box
        (sample.meta["video_id"], str(e["exp_id"]), int(sample.meta["start"]) + t)
        for pair in pairs
        for sample in read_shard(pair.frames, with_images=False)
        for e in sample.meta["expressions"]
        for t, box in enumerate(sample.meta["boxes"].get(str(e["obj_id"]), []))
        if box is not None
    }
    video = min(json.loads((source / "meta_expressions" / "valid" / "meta_expressions.json").read_text())["videos"])
    assert boxed == {(video, "0", 0), (video, "1", 0), (video, "2", 0)}  # rs000000's expressions 0-2 name object 1
    assert require_validation_boxes(config.data, pairs) is None  # no DataError


def test_empty_validation_shards_are_refused(tmp_path: Path) -> None:
    data = replace(Config(), **{"data.shards": str(tmp_path)}).data
    with pytest.raises(DataError, match=f"{tmp_path / 'valid'}: validation split 'valid'"):
        require_validation_boxes(data, [])


def evaluation_only(name: str) -> Config:
    return load_config([REPO_ROOT / "conf" / "base.yaml", REPO_ROOT / "conf" / "data" / f"{name}.yaml"])


@pytest.mark.parametrize("name", ["ref-davis17", "jhmdb-sentences"])
def test_evaluation_only_configurations_are_refused_by_every_training_entry(name: str) -> None:
    config = evaluation_only(name)
    for start in (train, sweep, lambda c: run_training(c, RefusingSession(), run_id=None)):
        with pytest.raises(ConfigError, match=r"^data\.split is null: .*evaluation only"):
            start(config)


def test_selecting_on_a_test_split_is_refused_by_the_driver_stages() -> None:
    config = load_config([REPO_ROOT / "conf" / "base.yaml", REPO_ROOT / "conf" / "data" / "a2d-sentences.yaml"], ["data.val_split=test"])
    for start in (train, sweep):
        with pytest.raises(ConfigError, match=r"^data\.val_split: 'test' is a test split of a2d-sentences"):
            start(config)
