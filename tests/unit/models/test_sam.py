"""FrozenSam against segment_anything's own SamPredictor, on tiny random SAMs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor, sam_model_registry  # tests/conftest.py imports groprompt first: it repairs torchvision
from segment_anything.utils.transforms import ResizeLongestSide
from torch import nn

from groprompt.errors import CheckpointError, ConfigError
from groprompt.models.sam import SAM_CONFIGS, FrozenSam
from tests.helpers import BOXES, SIZES, random_frame, upload_tree


@pytest.fixture(scope="module")
def tiny() -> FrozenSam:
    return FrozenSam.from_name("tiny")


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return [random_frame(h, w, seed) for seed, (h, w) in enumerate(SIZES)]


@pytest.fixture(scope="module")
def embeddings(tiny: FrozenSam, frames: list[np.ndarray]) -> torch.Tensor:
    return tiny.encode(frames)


@pytest.fixture(scope="module")
def predictors(tiny: FrozenSam, frames: list[np.ndarray]) -> list[SamPredictor]:
    result = []
    for frame in frames:
        predictor = SamPredictor(tiny.sam)
        predictor.set_image(frame)
        result.append(predictor)
    return result


def test_encode_matches_sam_predictor_on_a_batch_of_sizes(
    tiny: FrozenSam, frames: list[np.ndarray], embeddings: torch.Tensor, predictors: list[SamPredictor]
) -> None:
    assert embeddings.shape == (len(frames), 64, 16, 16) and embeddings.dtype == torch.float32
    assert not embeddings.is_inference() and not embeddings.requires_grad
    for frame, embedding, predictor in zip(frames, embeddings, predictors):
        torch.testing.assert_close(embedding, predictor.features[0], atol=1e-5, rtol=0)
        assert tiny.input_size(frame.shape[:2]) == predictor.input_size


def test_encode_accepts_a_uint8_tensor_batch(tiny: FrozenSam) -> None:
    batch = np.stack([random_frame(120, 160, seed) for seed in (7, 8)])
    from_tensor = tiny.encode(torch.from_numpy(batch))
    torch.testing.assert_close(from_tensor, tiny.encode(list(batch)), atol=0, rtol=0)
    assert tiny.encode([]).shape == (0, 64, 16, 16)


@pytest.mark.parametrize("bad", [np.zeros((32, 32, 3), np.float32), np.zeros((32, 32), np.uint8)])
def test_encode_rejects_frames_that_are_not_rgb_uint8(tiny: FrozenSam, bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="uint8 RGB"):
        tiny.encode([bad])


def test_transform_boxes_matches_resize_longest_side(tiny: FrozenSam) -> None:
    transform = ResizeLongestSide(tiny.image_size)
    for size in SIZES:
        got = tiny.transform_boxes(torch.as_tensor(BOXES, dtype=torch.float32), size)
        assert torch.equal(got, torch.as_tensor(transform.apply_boxes(BOXES, size), dtype=torch.float32))
        reference = transform.apply_boxes_torch(torch.as_tensor(BOXES, dtype=torch.float32), size)
        torch.testing.assert_close(got, reference)


def test_predict_logits_and_decode_match_sam_predictor(
    tiny: FrozenSam, frames: list[np.ndarray], embeddings: torch.Tensor, predictors: list[SamPredictor]
) -> None:
    for frame, embedding, predictor in zip(frames, embeddings, predictors):
        size = frame.shape[:2]
        input_boxes = tiny.transform_boxes(torch.as_tensor(BOXES), size)
        logits, scores = tiny.predict_logits(embedding, input_boxes)
        masks, decoded_scores = tiny.decode(embedding, BOXES, size)
        assert masks.shape == (len(BOXES), *size) and masks.dtype == torch.bool
        for i, box in enumerate(BOXES):
            want_masks, want_scores, want_low_res = predictor.predict(box=box, multimask_output=False)
            torch.testing.assert_close(logits[i], torch.from_numpy(want_low_res), atol=1e-5, rtol=0)
            torch.testing.assert_close(scores[i], torch.from_numpy(want_scores), atol=1e-5, rtol=0)
            torch.testing.assert_close(decoded_scores[i], torch.from_numpy(want_scores)[0], atol=1e-5, rtol=0)
            assert torch.equal(masks[i], torch.from_numpy(want_masks[0]))
            assert 0 < masks[i].sum() < masks[i].numel()  # a real mask, not a trivial one


def test_decode_multimask_keeps_the_best_of_three(tiny: FrozenSam, embeddings: torch.Tensor, predictors: list[SamPredictor]) -> None:
    size = SIZES[0]
    masks, scores = tiny.decode(embeddings[0:1], torch.as_tensor(BOXES), size, multimask=True)
    for i, box in enumerate(BOXES):
        want_masks, want_scores, _ = predictors[0].predict(box=box, multimask_output=True)
        best = int(want_scores.argmax())
        assert torch.equal(masks[i], torch.from_numpy(want_masks[best]))
        torch.testing.assert_close(scores[i], torch.tensor(want_scores[best]), atol=1e-5, rtol=0)


def test_decode_with_no_boxes_gives_no_masks(tiny: FrozenSam, embeddings: torch.Tensor) -> None:
    masks, scores = tiny.decode(embeddings[0], np.zeros((0, 4)), (200, 300))
    assert masks.shape == (0, 200, 300) and masks.dtype == torch.bool and scores.shape == (0,)


def test_embed_boxes_equals_prompt_encoder_and_is_differentiable(tiny: FrozenSam) -> None:
    boxes = torch.tensor([[10.0, 20.0, 110.0, 150.0], [3.0, 4.0, 250.0, 200.0]], requires_grad=True)
    embedded = tiny.embed_boxes(boxes)
    reference, _ = tiny.sam.prompt_encoder(points=None, boxes=boxes.detach(), masks=None)
    assert embedded.shape == (2, 2, tiny.embed_dim)
    torch.testing.assert_close(embedded.detach(), reference, atol=0, rtol=0)

    embedded.square().sum().backward()
    assert boxes.grad is not None and boxes.grad.abs().sum() > 0
    assert all(param.grad is None for param in tiny.parameters())


def test_transform_boxes_is_differentiable(tiny: FrozenSam) -> None:
    boxes = torch.tensor([[10.0, 20.0, 110.0, 150.0]], requires_grad=True)
    tiny.embed_boxes(tiny.transform_boxes(boxes, (200, 300))).sum().backward()
    assert boxes.grad is not None and boxes.grad.abs().sum() > 0


def test_parameters_are_frozen_and_train_keeps_eval_mode(tiny: FrozenSam) -> None:
    assert all(not param.requires_grad for param in tiny.parameters())
    parent = nn.Sequential(nn.Linear(2, 2), tiny)
    parent.train()
    assert parent.training and parent[0].training
    assert not any(module.training for module in tiny.modules())
    assert tiny.train() is tiny and not tiny.training


@pytest.mark.parametrize(("name", "depth"), [("tiny", 2), ("tiny-d0", 0)])
def test_tiny_configurations(name: str, depth: int) -> None:
    sam = FrozenSam.from_name(name)
    assert (sam.image_size, sam.embed_dim, sam.embed_grid) == (256, 64, 16)
    assert len(sam.sam.image_encoder.blocks) == depth
    assert sam.encode([random_frame(64, 48, 0)]).shape == (1, 64, 16, 16)


def test_random_init_is_seeded_named_and_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    first, again, other = (FrozenSam.from_name("tiny", seed=seed) for seed in (0, 0, 1))
    assert torch.equal(torch.random.get_rng_state(), before)
    assert (first.weights_id, other.weights_id) == ("random-init:0", "random-init:1")
    state, state_again, state_other = (m.sam.state_dict() for m in (first, again, other))
    assert all(torch.equal(state[key], state_again[key]) for key in state)
    assert not torch.equal(state["mask_decoder.iou_token.weight"], state_other["mask_decoder.iou_token.weight"])


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="tiny-d0"):
        FrozenSam.from_name("vit_x")


def test_registry_has_the_released_architectures() -> None:
    assert {"vit_h", "vit_l", "vit_b", "tiny", "tiny-d0"} <= set(SAM_CONFIGS)
    assert SAM_CONFIGS["vit_h"].embed_grid == 64


@pytest.fixture
def tiny_checkpoint(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.pth"
    torch.save(FrozenSam.from_name("tiny", seed=5).sam.state_dict(), path)
    return path


def test_checkpoint_loads_every_tensor_and_is_identified_by_sha256(tiny_checkpoint: Path) -> None:
    loaded = FrozenSam.from_name("tiny", checkpoint=tiny_checkpoint, seed=0)
    saved = torch.load(tiny_checkpoint, weights_only=True)
    assert saved.keys() == loaded.sam.state_dict().keys()
    assert all(torch.equal(loaded.sam.state_dict()[key], value) for key, value in saved.items())
    assert loaded.weights_id == hashlib.sha256(tiny_checkpoint.read_bytes()).hexdigest()
    assert not any(param.requires_grad for param in loaded.parameters()) and not loaded.training


def test_a_checkpoint_in_a_bucket_loads_as_from_disk(tiny_checkpoint: Path, bucket: str) -> None:
    upload_tree(tiny_checkpoint.parent, f"{bucket}/models")
    local = FrozenSam.from_name("tiny", checkpoint=tiny_checkpoint, seed=0)
    remote = FrozenSam.from_name("tiny", checkpoint=f"{bucket}/models/{tiny_checkpoint.name}", seed=0)
    assert remote.weights_id == local.weights_id
    assert all(torch.equal(remote.sam.state_dict()[key], value) for key, value in local.sam.state_dict().items())


def test_missing_checkpoint_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.pth"
    with pytest.raises(CheckpointError, match="absent.pth: checkpoint not found"):
        FrozenSam.from_name("tiny", checkpoint=path)


def test_unreadable_checkpoint_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="garbage.pth"):
        FrozenSam.from_name("tiny", checkpoint=path)


def test_checkpoint_with_wrong_keys_names_the_file_and_keys(tiny_checkpoint: Path) -> None:
    state = torch.load(tiny_checkpoint, weights_only=True)
    state["extra.weight"] = state.pop("mask_decoder.iou_token.weight")
    torch.save(state, tiny_checkpoint)
    with pytest.raises(CheckpointError, match="tiny.pth") as caught:
        FrozenSam.from_name("tiny", checkpoint=tiny_checkpoint)
    assert "mask_decoder.iou_token.weight" in str(caught.value) and "extra.weight" in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_checkpoint_with_wrong_shapes_names_the_file(tiny_checkpoint: Path) -> None:
    state = torch.load(tiny_checkpoint, weights_only=True)
    state["mask_decoder.iou_token.weight"] = torch.zeros(1, 3)
    torch.save(state, tiny_checkpoint)
    with pytest.raises(CheckpointError, match="tiny.pth"):
        FrozenSam.from_name("tiny", checkpoint=tiny_checkpoint)


def test_checkpoint_that_is_not_a_state_dict_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), path)
    with pytest.raises(CheckpointError, match="tensor.pth"):
        FrozenSam.from_name("tiny", checkpoint=path)


def test_vit_b_loads_a_checkpoint_saved_from_segment_anything(tmp_path: Path) -> None:
    path = tmp_path / "sam_vit_b.pth"
    torch.manual_seed(0)
    reference = sam_model_registry["vit_b"]()
    torch.save(reference.state_dict(), path)
    loaded = FrozenSam.from_name("vit_b", checkpoint=path, seed=1)
    assert (loaded.image_size, loaded.embed_dim, loaded.embed_grid) == (1024, 256, 64)
    for key in ("image_encoder.blocks.11.attn.qkv.weight", "mask_decoder.iou_token.weight"):
        assert torch.equal(loaded.sam.state_dict()[key], reference.state_dict()[key])


def test_a_full_size_sam_without_a_checkpoint_is_refused_unless_allowed() -> None:
    from groprompt.config import ModelConfig
    from groprompt.models.frozen import build_frozen
    from groprompt.models.sam import require_weights

    with pytest.raises(ConfigError, match=r"model.sam=vit_b has no model.sam_checkpoint.*model.allow_random_weights=true"):
        build_frozen(ModelConfig(sam="vit_b"))
    require_weights("vit_b", None, allow_random=True)  # allowed explicitly
    require_weights("vit_h", "sam_vit_h.pth", allow_random=False)  # a checkpoint is given
    require_weights("tiny", None, allow_random=False)  # test configurations are meant to be random
