"""The ``grounding-dino`` proposal generator on a tiny random Grounding DINO saved as a pretrained folder: loading and
its errors, what stays frozen, a short training run without Ray, and its validation and evaluation against plain references."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from groprompt.checkpoints import build_trained_model, load_trained
from groprompt.config import Config, LossConfig, ModelConfig, TrainConfig, replace, to_dict
from groprompt.data.batches import ClipBatch, batches
from groprompt.data.clips import ClipSource
from groprompt.data.pixels import frame_pixels
from groprompt.data.refshapes import RefShapesSpec, write_refshapes
from groprompt.data.shard_pairs import metadata_of, shard_pairs
from groprompt.data.shards import read_shard
from groprompt.data.targets import referring_expressions
from groprompt.errors import CheckpointError, ConfigError
from groprompt.evaluation.box_sources import ModelBoxes, Prompts
from groprompt.evaluation.scoring import evaluate_shard
from groprompt.inference.predictor import Predictor
from groprompt.inference.video import predict_video
from groprompt.models.frozen import FrozenEncoders, build_frozen
from groprompt.models.groprompt import build_model
from groprompt.models.grounding_dino import FROZEN_PARAMETERS
from groprompt.models.segmentors import build_segmentor
from groprompt.models.text import FrozenTextEncoder, default_text_encoder_path
from groprompt.training.loop import build_optimizer, rank_keys, validation_iou
from groprompt.training.step import compute_losses
from tests.helpers import FakeSession, image_member_reads, save_tiny_grounding_dino, shard_and_embed, train

PIXELS = 64  # frames resized to 64 x 64 for the detector


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """One torch thread: the tiny detector's many small operators only lose time to a second, shared core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def weights_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_grounding_dino(tmp_path_factory.mktemp("grounding-dino") / "tiny")


def gd_config(folder: Path, **changes: object) -> ModelConfig:
    values = {"sam": "tiny", "proposal": "grounding-dino", "proposal_weights": str(folder), "proposal_image_size": PIXELS, "num_heads": 2}
    return ModelConfig(**{**values, **changes})


@pytest.fixture(scope="module")
def frozen(weights_folder: Path) -> FrozenEncoders:
    return build_frozen(gd_config(weights_folder))


def test_grounding_dino_loads_the_saved_folder_through_the_configuration(weights_folder: Path, frozen: FrozenEncoders) -> None:
    model = build_model(gd_config(weights_folder), frozen)
    saved = load_file(weights_folder / "model.safetensors")
    loaded = model.proposal.detector.state_dict()
    shared = [name for name in saved if name in loaded]
    assert len(shared) > 100
    assert all(torch.equal(loaded[name], saved[name]) for name in shared)
    assert model.proposal.pixel_size == PIXELS
    assert model.proposal.sentence_dim == 32  # the tiny BERT's width, not MiniLM's
    assert model.modalcon.project[-1].out_features == 32


def test_grounding_dino_folder_errors_name_the_folder(tmp_path: Path, weights_folder: Path) -> None:
    with pytest.raises(CheckpointError, match=str(tmp_path / "missing")):
        build_model(gd_config(tmp_path / "missing"), build_frozen(ModelConfig()))
    with pytest.raises(CheckpointError, match="expected 'grounding-dino'"):  # another model's folder (MiniLM, a BERT)
        build_model(gd_config(default_text_encoder_path()), build_frozen(ModelConfig()))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((weights_folder / "config.json").read_text())  # no weights, no tokenizer
    with pytest.raises(CheckpointError, match=str(broken)):
        build_model(gd_config(broken), build_frozen(ModelConfig()))
    other = Path(shutil.copytree(weights_folder, tmp_path / "other"))
    config = json.loads((other / "config.json").read_text())
    config["decoder_ffn_dim"] = 96  # the weights were saved for 64
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=str(other)):
        build_model(gd_config(other), build_frozen(ModelConfig()))
    partial = Path(shutil.copytree(weights_folder, tmp_path / "partial"))
    state = load_file(partial / "model.safetensors")
    save_file({k: v for k, v in state.items() if ".decoder.layers.0." not in k}, partial / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=f"{partial}: weights do not fit config.json"):
        build_model(gd_config(partial), build_frozen(ModelConfig()))


def test_grounding_dino_configuration_is_validated(weights_folder: Path) -> None:
    with pytest.raises(ConfigError, match="model.proposal"):
        ModelConfig(proposal="detr")
    with pytest.raises(ConfigError, match="model.proposal_weights"):
        build_model(ModelConfig(proposal="grounding-dino"), build_frozen(ModelConfig()))
    with pytest.raises(ConfigError, match="model.freeze"):
        gd_config(weights_folder, freeze=("backbone", "decoder"))
    with pytest.raises(ConfigError, match="model.freeze"):
        gd_config(weights_folder, freeze=("encoder",))  # a frozen encoder passes no gradient to a trainable backbone


def test_grounding_dino_frozen_parts_stay_bit_identical_after_a_step(weights_folder: Path, frozen: FrozenEncoders) -> None:
    torch.manual_seed(0)
    model = build_model(gd_config(weights_folder), frozen).train()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    prefixes = tuple(f"proposal.detector.{p}" for group in FROZEN_PARAMETERS.values() for p in group)
    frozen_names = {name for name, _ in model.named_parameters() if name.startswith(prefixes)}
    assert frozen_names and all(not p.requires_grad for n, p in model.named_parameters() if n in frozen_names)
    assert all(p.requires_grad for n, p in model.named_parameters() if n not in frozen_names)
    assert all(not module.training for module in model.proposal.frozen_modules)  # no dropout in frozen parts

    batch_size, frames = 2, 2
    pixels = torch.randint(0, 256, (batch_size, frames, 3, PIXELS, PIXELS), dtype=torch.uint8)
    grid = frozen.sam.embed_grid
    boxes = torch.tensor([[0.3, 0.3, 0.2, 0.2], [0.6, 0.5, 0.3, 0.2]])[:, None].expand(batch_size, frames, 4)
    batch = ClipBatch(
        embeddings=torch.randn(batch_size, frames, frozen.sam.embed_dim, grid, grid),
        sentences=["the red square", "a blue circle"],
        negatives=["a blue circle", "the red square"],
        boxes=boxes,
        valid=torch.ones(batch_size, frames, dtype=torch.bool),
        negative_boxes=boxes.flip(0),
        negative_valid=torch.ones(batch_size, frames, dtype=torch.bool),
        same_video=torch.ones(batch_size, dtype=torch.bool),
        input_sizes=torch.tensor([[256, 256]] * batch_size),
        pixels=pixels,
    )
    optimizer, _ = build_optimizer(model, TrainConfig(lr=1e-2), steps_per_epoch=1)
    got_gradient: set[str] = set()
    with backbone_batches(model.proposal) as sizes:
        for _ in range(2):  # the box heads' last layers start at zero: the decoder gets gradients from the second step
            optimizer.zero_grad()
            compute_losses(model, frozen, batch, LossConfig())["total"].backward()
            got_gradient |= {name for name, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
            optimizer.step()
    assert sizes == [batch_size * frames] * 2  # each clip's frames once, not once for S_i and once for S_j
    assert not got_gradient & frozen_names
    assert {n.split(".")[0] for n in got_gradient} == {"proposal", "modalcon"}
    assert any(".decoder.layers." in n for n in got_gradient) and any("bbox_embed" in n for n in got_gradient)
    assert any(".enc_output." in n for n in got_gradient)  # query selection trains through the selected proposals
    after = model.state_dict()
    assert all(torch.equal(after[name], before[name]) for name in frozen_names)
    assert any(not torch.equal(after[name], before[name]) for name in got_gradient)


@contextmanager
def backbone_batches(generator: nn.Module) -> Iterator[list[int]]:
    """The batch size of every call of the detector's Swin image backbone inside the block."""
    sizes: list[int] = []
    swin = generator.detector.model.backbone.conv_encoder
    hook = swin.register_forward_hook(lambda _module, inputs, _output: sizes.append(inputs[0].shape[0]))
    try:
        yield sizes
    finally:
        hook.remove()


def reference_detection(generator: nn.Module, images: torch.Tensor, sentences: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Final-layer boxes (N, Q, 4) and query confidences (N, Q) of the transformers detector itself, every row's
    image (N, 3, S, S) uint8 through it, as before images were shared."""
    values = (images.float() / 255 - generator.mean) / generator.std
    out = generator.detector(pixel_values=values, **generator.tokens(sentences))
    return out.pred_boxes, out.logits.amax(-1)


def test_grounding_dino_backbone_runs_once_per_distinct_frame_with_unchanged_outputs(weights_folder: Path, frozen: FrozenEncoders) -> None:
    generator = build_model(gd_config(weights_folder), frozen).proposal.eval()
    torch.manual_seed(1)
    clips, frames = 2, 3
    pixels = torch.randint(0, 256, (clips, frames, 3, PIXELS, PIXELS), dtype=torch.uint8)
    sentences = ["the red square", "a blue circle", "a green triangle", "the red square"]  # sentence b reads clip b % 2
    with torch.no_grad(), backbone_batches(generator) as sizes:
        outputs, _ = generator.run(frozen, torch.empty(0), pixels, sentences)
        rows = pixels[torch.tensor([0, 1, 0, 1])].flatten(0, 1)  # (b, t) rows, each with its own copy of its frame
        expected_boxes, expected_logits = reference_detection(generator, rows, [s for s in sentences for _ in range(frames)])
    assert sizes == [clips * frames, len(sentences) * frames]  # ours: the distinct frames only; the reference: every row
    boxes = torch.stack([output.boxes[-1] for output in outputs], dim=1).flatten(0, 1)
    logits = torch.stack([output.logits[-1] for output in outputs], dim=1).flatten(0, 1)
    torch.testing.assert_close(boxes, expected_boxes, atol=1e-5, rtol=0)
    torch.testing.assert_close(logits, expected_logits, atol=1e-5, rtol=0)

    stream = generator.stream(frozen, sentences[:3])
    with torch.no_grad(), backbone_batches(generator) as sizes:
        step = stream.step(torch.empty(0), pixels[1, 2])
    assert sizes == [1]  # one frame for the three sentences
    with torch.no_grad():
        expected_boxes, expected_logits = reference_detection(generator, pixels[1, 2][None].expand(3, -1, -1, -1), sentences[:3])
    torch.testing.assert_close(step.boxes[-1], expected_boxes, atol=1e-5, rtol=0)
    torch.testing.assert_close(step.logits[-1], expected_logits, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="3 sentences over 2 clips"):
        generator.run(frozen, torch.empty(0), pixels, sentences[:3])


def test_grounding_dino_never_loads_the_minilm_text_encoder(weights_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: FrozenTextEncoder, *args: object, **kwargs: object) -> None:
        raise AssertionError("the MiniLM text encoder was loaded")

    monkeypatch.setattr(FrozenTextEncoder, "__init__", refuse)
    frozen = build_frozen(gd_config(weights_folder))
    model = build_model(gd_config(weights_folder), frozen).eval()
    pixels = torch.randint(0, 256, (1, 2, 3, PIXELS, PIXELS), dtype=torch.uint8)
    with torch.no_grad():
        outputs, features = model.proposal.run(frozen, torch.empty(0), pixels, ["the red square"])
    assert len(outputs) == 2 and features.shape == (1, 32)  # its own BERT's sentence features
    sam_decoder = ModelConfig(sam="tiny")
    with pytest.raises(AssertionError, match="MiniLM"):  # the sam-decoder generator does load it
        build_model(sam_decoder, build_frozen(sam_decoder))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, weights_folder: Path) -> tuple[Config, FakeSession]:
    """Eight training and four held-out 4-frame RefShapes videos, sharded and embedded with the tiny SAM; three
    epochs of ``run_training`` with the tiny Grounding DINO (one worker, no Ray)."""
    root = tmp_path_factory.mktemp("gd-training")
    write_refshapes(root / "data", RefShapesSpec(videos=12, frames=4, size=64, seed=0), valid_fraction=0.34, progress=False)
    model = gd_config(weights_folder)
    config = replace(
        Config(),
        model=to_dict(model),
        **{
            "data.root": str(root / "data"),
            "data.shards": str(root / "shards"),
            "data.embeddings": str(root / "embeddings"),
            "data.clip_len": 2,
            "train.epochs": 3,
            "train.batch_size": 4,
            "train.lr": 5e-3,
            "train.grad_clip": 1.0,
            "train.cpus_per_worker": 1.0,
        },
    )
    sam = build_frozen(model).sam
    for split in ("train", "valid"):
        shard_and_embed(root / "data", split, root / "shards", root / "embeddings", sam)
    return config, train(config, FakeSession(root / "store"))


def test_grounding_dino_training_lowers_the_loss(trained: tuple[Config, FakeSession]) -> None:
    """Three epochs lower the epoch means of the total and of the box loss (a random tiny detector, with frozen random
    backbone and no classification loss, does not learn to localise in seconds: no accuracy is asserted)."""
    _, session = trained
    first, last = session.reports[0], session.reports[-1]
    assert last["loss_total"] < first["loss_total"]
    assert last["loss_l1"] < first["loss_l1"]
    assert last["loss_select"] == 0  # no query-selection term: the detector keeps its own
    assert len(session.checkpoints) == 3


def test_grounding_dino_clips_carry_resized_frames(trained: tuple[Config, FakeSession], frozen: FrozenEncoders) -> None:
    config, _ = trained
    pairs = shard_pairs(config.data, "train", frozen.sam)
    with_pixels, without = ClipSource(pairs, 2, pixel_size=PIXELS), ClipSource(pairs, 2)
    batch = next(batches(with_pixels.items(seed=0), with_pixels.count, 4, 1))
    assert batch.pixels is not None and batch.pixels.shape == (4, 2, 3, PIXELS, PIXELS) and batch.pixels.dtype == torch.uint8
    assert next(batches(without.items(seed=0), without.count, 4, 1)).pixels is None


def plain_iou(a: list[float], b: list[float]) -> float:
    """IoU of two xyxy boxes, in plain Python."""
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_plain_iou_by_hand() -> None:
    # [0, 0, 4, 2] and [2, 0, 6, 2]: intersection 2 x 2 = 4, union 8 + 8 - 4 = 12
    assert plain_iou([0, 0, 4, 2], [2, 0, 6, 2]) == pytest.approx(1 / 3)
    assert plain_iou([0, 0, 1, 1], [2, 2, 3, 3]) == 0.0


def referring(meta: dict) -> list[dict]:
    """The sample's expressions about an object that has boxes, read from its JSON by hand."""
    return [e for e in meta["expressions"] if e["obj_id"] is not None and str(e["obj_id"]) in meta["boxes"]]


@dataclass
class Reference:
    """The last checkpoint's top boxes by the transformers detector itself, and their IoUs, computed in plain Python."""

    boxes: dict[tuple[str, str], list[list[float]]]  # (video, exp_id) -> per frame, xyxy normalised, clipped to the frame
    ious: dict[tuple[str, str], list[float]]  # (video, exp_id) -> IoU on each frame where its object has a box


@pytest.fixture(scope="module")
def reference(trained: tuple[Config, FakeSession], frozen: FrozenEncoders) -> Reference:
    """Each (expression, frame) row of the validation shards through the detector (``reference_detection``), its most
    confident query's box clipped to the frame, against the ground-truth box of the shard's JSON."""
    config, session = trained
    weights = load_trained(session.checkpoints[max(session.checkpoints)], "")
    _, model = build_trained_model(config.model, weights, frozen)
    generator = model.proposal.eval()
    result = Reference({}, {})
    for pair in shard_pairs(config.data, "valid", frozen.sam):
        for sample in read_shard(pair.frames, with_images=True):
            meta = sample.meta
            assert all(meta.get("annotated") or [True])  # evaluation scores every frame here, as validation does
            frames = torch.stack([frame_pixels(sample.frame(t), PIXELS) for t in range(len(meta["frame_names"]))])
            scale = [meta["width"], meta["height"]] * 2
            expressions = referring(meta)
            with torch.no_grad():  # one row per (expression, frame), expression-major
                boxes, logits = reference_detection(
                    generator, frames.repeat(len(expressions), 1, 1, 1), [e["text"] for e in expressions for _ in frames]
                )
            for i, e in enumerate(expressions):
                key = (meta["video_id"], str(e["exp_id"]))
                for t, truth in enumerate(meta["boxes"][str(e["obj_id"])]):
                    row = i * len(frames) + t
                    cx, cy, w, h = boxes[row, int(logits[row].argmax())].tolist()
                    box = [min(max(v, 0.0), 1.0) for v in (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)]
                    result.boxes.setdefault(key, []).append(box)
                    if truth is not None:
                        result.ious.setdefault(key, []).append(plain_iou(box, [v / s for v, s in zip(truth, scale)]))
    assert len(result.ious) >= 8
    return result


def test_grounding_dino_val_box_iou_is_the_checkpoints_mean_iou_over_expressions(
    trained: tuple[Config, FakeSession], reference: Reference
) -> None:
    """The last epoch's val_box_iou: the mean over expressions of each one's mean IoU over its frames, of the weights of
    that epoch's checkpoint."""
    _, session = trained
    expected = sum(sum(v) / len(v) for v in reference.ious.values()) / len(reference.ious)
    assert session.reports[-1]["val_box_iou"] == pytest.approx(expected, abs=1e-5)


def test_grounding_dino_checkpoint_evaluates_and_predicts_the_reference_boxes(
    trained: tuple[Config, FakeSession], frozen: FrozenEncoders, reference: Reference
) -> None:
    config, session = trained
    weights = load_trained(session.checkpoints[max(session.checkpoints)], "")
    _, model = build_trained_model(config.model, weights, frozen)
    assert type(model.proposal).__name__ == "GroundingDinoGenerator"
    shards = Path(config.data.shards) / "valid"
    rows = [
        row
        for path in sorted(shards.glob("*.tar"))
        for row in evaluate_shard(
            path, Path(config.data.embeddings) / "valid" / path.name, ModelBoxes(model, frozen), build_segmentor("box")
        )
    ]
    got = {(row["video"], row["exp_id"]): (row["box_iou_sum"], row["n_box_frames"]) for row in rows}
    assert len(got) == len(rows) and got.keys() == reference.ious.keys()
    for key, ious in reference.ious.items():
        assert got[key][1] == len(ious), key
        assert got[key][0] == pytest.approx(sum(ious), abs=1e-4), key

    sample = next(read_shard(shard_pairs(config.data, "valid", frozen.sam)[0].frames, with_images=True))
    expressions = referring(sample.meta)
    frames = [sample.frame(t) for t in range(len(sample.meta["frame_names"]))]
    predictor = Predictor(frozen, model, build_segmentor("box"), "box", weights.model_id)
    predicted = predict_video(predictor, zip(sample.meta["frame_names"], frames), [e["text"] for e in expressions])
    scale = np.array([sample.meta["width"], sample.meta["height"]] * 2)
    expected = np.array([reference.boxes[(sample.meta["video_id"], str(e["exp_id"]))] for e in expressions]) * scale
    np.testing.assert_allclose(np.stack([p.boxes[:, 0] for p in predicted], axis=1), expected, atol=1e-3, rtol=0)


class WidenedGroundTruth:
    """A box source of known predictions: each expression's ground-truth box made twice as wide (x2 moved right by
    the box's width), and no box at all on frame 0."""

    needs_embeddings = False
    needs_frames = False

    def prompts(self, meta: dict, expressions: list[dict], embeddings: object, frames: object = None) -> Prompts:
        boxes = np.full((len(expressions), len(meta["frame_names"]), 4), np.nan)
        for i, e in enumerate(expressions):
            for t, box in enumerate(meta["boxes"].get(str(e["obj_id"]), [])):
                if box is not None and t > 0:
                    x1, y1, x2, y2 = box
                    boxes[i, t] = [x1, y1, x2 + (x2 - x1), y2]
        return Prompts(boxes[:, :, None], np.isfinite(boxes).all(-1).astype(np.float64)[:, :, None])


def test_evaluation_of_a_known_prediction_gives_the_known_box_iou(trained: tuple[Config, FakeSession]) -> None:
    """A box twice as wide as the ground truth and holding it has IoU w h / (2 w h) = 1/2; a frame without a box 0: an
    expression's box_iou_sum is 1/2 per frame after the first where its object has a box."""
    config, _ = trained
    shards = Path(config.data.shards) / "valid"
    rows = [
        row for path in sorted(shards.glob("*.tar")) for row in evaluate_shard(path, None, WidenedGroundTruth(), build_segmentor("box"))
    ]
    expected = {}
    for path in sorted(shards.glob("*.tar")):
        for sample in read_shard(path, with_images=False):
            for e in referring(sample.meta):
                present = [box is not None for box in sample.meta["boxes"][str(e["obj_id"])]]
                expected[(sample.meta["video_id"], str(e["exp_id"]))] = (0.5 * sum(present[1:]), sum(present))
    assert any(total < n / 2 for total, n in expected.values())  # frame 0 counts in the frames, not in the sum
    got = {(row["video"], row["exp_id"]): (row["box_iou_sum"], row["n_box_frames"]) for row in rows}
    assert got.keys() == expected.keys() and len(rows) == len(expected)
    for key, (total, count) in expected.items():
        assert got[key][0] == pytest.approx(total, rel=1e-9) and got[key][1] == count, key


def test_grounding_dino_reads_frames_only_of_the_samples_a_rank_uses(
    trained: tuple[Config, FakeSession], frozen: FrozenEncoders, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, _ = trained
    pairs = shard_pairs(config.data, "train", frozen.sam)
    source = ClipSource(pairs, 2, rank=1, world=4, pixel_size=PIXELS)
    keys = {ref.key for ref in source.epoch_refs(seed=0)}
    assert keys and keys < {meta["key"] for meta in metadata_of(pairs)}
    reads = image_member_reads(monkeypatch)
    assert list(source.items(seed=0))
    assert {name.split(".")[0] for name in reads} == keys

    val_pairs = shard_pairs(config.data, "valid", frozen.sam)
    metas = metadata_of(val_pairs)
    keys = rank_keys(val_pairs, rank=1, world=2)
    videos = sorted({meta["video_id"] for meta in metas})
    assert keys == {meta["key"] for meta in metas if videos.index(meta["video_id"]) % 2 == 1}
    model = build_model(config.model, frozen)
    reads.clear()
    with backbone_batches(model.proposal) as sizes:
        validation_iou(model, frozen, val_pairs, keys, torch.device("cpu"))
    assert {name.split(".")[0] for name in reads} == keys
    # one backbone pass per scored sample, over its frames once whatever its number of expressions
    assert sizes == [len(m["frame_names"]) for m in metas if m["key"] in keys and referring_expressions(m)]
