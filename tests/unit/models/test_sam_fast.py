"""The fast paths of the frozen encoders (EncoderOptions) against plain float32, on tiny random models (CPU)."""

from __future__ import annotations

import copy
import sys

import numpy as np
import pytest
import torch
from segment_anything.modeling.image_encoder import Attention

from groprompt.config import ModelConfig
from groprompt.errors import ConfigError
from groprompt.models.encoder_options import EncoderOptions, SdpaAttention
from groprompt.models.sam import FrozenSam
from groprompt.models.text import FrozenTextEncoder
from tests.helpers import BOXES, SIZES, random_frame

SEEDS = (0, 1, 2, 3)


def with_random_relative_positions(sam: FrozenSam, seed: int = 0) -> FrozenSam:
    """``sam`` with non-zero relative-position tables (SAM initialises them to zero, which would hide the bias)."""
    generator = torch.Generator().manual_seed(seed)
    for block in sam.sam.image_encoder.blocks:
        for table in (block.attn.rel_pos_h, block.attn.rel_pos_w):
            table.data.normal_(0.0, 0.5, generator=generator)
    return sam


def variant(sam: FrozenSam, options: EncoderOptions) -> FrozenSam:
    """A copy of ``sam`` (same weights) computing with ``options``."""
    return FrozenSam(copy.deepcopy(sam.sam), sam.name, sam.weights_id, options)


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return [random_frame(h, w, seed) for seed, (h, w) in enumerate(SIZES)]


@pytest.mark.parametrize(("size", "window"), [((3, 5), None), ((4, 4), 2)])
def test_sdpa_attention_equals_the_original_on_any_grid(size: tuple[int, int], window: int | None) -> None:
    torch.manual_seed(0)
    original = Attention(32, num_heads=4, use_rel_pos=True, input_size=size)
    for table in (original.rel_pos_h, original.rel_pos_w):
        table.data.normal_(0.0, 0.5)
    fast = copy.deepcopy(original)
    fast.__class__ = SdpaAttention
    x = torch.randn(3, *size, 32)
    torch.testing.assert_close(fast(x), original(x), atol=1e-5, rtol=1e-5)
    assert list(fast.state_dict()) == list(original.state_dict())


def test_sdpa_encoder_equals_the_original_with_the_same_weights_and_keys() -> None:
    plain = with_random_relative_positions(FrozenSam.from_name("tiny"))
    fast = variant(plain, EncoderOptions(sdpa=True))
    assert all(isinstance(block.attn, SdpaAttention) for block in fast.sam.image_encoder.blocks)
    assert fast.state_dict().keys() == plain.state_dict().keys()
    assert all(torch.equal(fast.state_dict()[key], value) for key, value in plain.state_dict().items())
    inputs = torch.randn(2, 3, plain.image_size, plain.image_size)
    with torch.inference_mode():
        expected = plain.encode_inputs(inputs)
        torch.testing.assert_close(fast.encode_inputs(inputs), expected, atol=1e-5 * expected.abs().max().item(), rtol=0)


def test_channels_last_equals_float32(frames: list[np.ndarray]) -> None:
    plain = FrozenSam.from_name("tiny")
    expected = plain.encode(frames)
    torch.testing.assert_close(variant(plain, EncoderOptions(channels_last=True)).encode(frames), expected, atol=1e-5, rtol=0)


def mask_ious(sam: FrozenSam, frames: list[np.ndarray], first: torch.Tensor, second: torch.Tensor) -> list[float]:
    """IoU of the masks that the same boxes decode from two embeddings of each frame."""
    ious = []
    for frame, a, b in zip(frames, first, second):
        masks_a, _ = sam.decode(a, BOXES, frame.shape[:2])
        masks_b, _ = sam.decode(b, BOXES, frame.shape[:2])
        for x, y in zip(masks_a, masks_b):
            union = (x | y).sum().item()
            ious.append((x & y).sum().item() / union if union else 1.0)
    return ious


def test_bfloat16_embeddings_decode_to_nearly_the_same_masks(frames: list[np.ndarray]) -> None:
    """Measured on this CPU: mean IoU per model 0.973-0.997 over seeds 0-3 (pooled 0.987), worst mask 0.89."""
    pooled = []
    for seed in SEEDS:
        plain = FrozenSam.from_name("tiny", seed=seed)
        fast = FrozenSam.from_name("tiny", seed=seed, options=EncoderOptions(dtype="bfloat16"))
        exact, approximate = plain.encode(frames), fast.encode(frames)
        assert approximate.dtype == torch.float32 and not approximate.is_inference()
        assert not torch.equal(exact, approximate)  # autocast did run in bfloat16
        ious = mask_ious(plain, frames, exact, approximate)
        assert np.mean(ious) >= 0.95, (seed, ious)
        pooled += ious
    assert np.mean(pooled) >= 0.975


def test_the_bfloat16_text_encoder_keeps_its_sentence_features() -> None:
    sentences = ["the red square moving left", "a dog", "the person on the right riding a bike"]
    exact, approximate = FrozenTextEncoder()(sentences), FrozenTextEncoder(dtype="bfloat16")(sentences)
    assert approximate.pooled.dtype == approximate.tokens.dtype == torch.float32
    assert not torch.equal(exact.tokens, approximate.tokens)
    assert torch.equal(exact.mask, approximate.mask)
    assert torch.nn.functional.cosine_similarity(exact.pooled, approximate.pooled).min() >= 0.999


def compile_unavailable() -> str | None:
    """Why ``torch.compile`` (its default inductor backend) cannot run on this machine, or None where it can.

    The two conditions torch itself checks: TorchDynamo supports this Python and platform
    (``torch._dynamo.is_dynamo_supported``), and inductor's CPU code generation finds a C++ compiler (it compiles its
    kernels with ``g++``/``clang++``; ``get_cpp_compiler`` raises ``InvalidCxxCompiler`` when none runs). Python 3.11
    with torch 2.13 CPU and g++ 12, as here, meets both: the test then runs, and any failure of compilation fails it.
    """
    if not torch._dynamo.is_dynamo_supported():
        return f"TorchDynamo does not support Python {sys.version_info.major}.{sys.version_info.minor} on {sys.platform}"
    from torch._inductor.cpp_builder import get_cpp_compiler
    from torch._inductor.exc import InvalidCxxCompiler

    try:
        get_cpp_compiler()
    except InvalidCxxCompiler:
        return "inductor finds no C++ compiler to build its CPU kernels"
    return None


@pytest.mark.skipif(compile_unavailable() is not None, reason=str(compile_unavailable()))
def test_compiled_encoder_equals_eager_and_keeps_the_state_dict() -> None:
    """tiny-d0 (patch embedding and neck only) keeps the first compilation short: about 20 s on a 2-core CPU."""
    plain = FrozenSam.from_name("tiny-d0")
    compiled = variant(plain, EncoderOptions(compile=True))
    assert compiled.state_dict().keys() == plain.state_dict().keys()
    generator = torch.Generator().manual_seed(0)
    first, second = (torch.randn(1, 3, plain.image_size, plain.image_size, generator=generator) for _ in range(2))
    counters = torch._dynamo.utils.counters
    counters.clear()
    with torch.inference_mode():
        results = [compiled.encode_inputs(first)]
        graphs = counters["stats"]["unique_graphs"]
        results.append(compiled.encode_inputs(second))  # the same shape: no second compilation
        expected = [plain.encode_inputs(first), plain.encode_inputs(second)]
    assert graphs >= 1, dict(counters)  # dynamo did capture a graph: the result is not eager's own
    assert counters["stats"]["unique_graphs"] == graphs
    for result, reference in zip(results, expected):
        scale = reference.abs().max().item()
        torch.testing.assert_close(result, reference, atol=1e-5 * scale, rtol=1e-5)
    assert not torch.equal(expected[0], expected[1])  # the two inputs are told apart


def test_options_come_from_the_model_configuration_and_are_checked() -> None:
    config = ModelConfig(encoder_dtype="bfloat16", encoder_sdpa=True, encoder_compile=True)
    assert EncoderOptions.from_config(config) == EncoderOptions("bfloat16", sdpa=True, compile=True)
    assert EncoderOptions.from_config(ModelConfig()) == EncoderOptions()
    assert EncoderOptions("bfloat16", sdpa=True, compile=True).describe() == "bfloat16+sdpa+compile"
    with pytest.raises(ConfigError, match=r"model.encoder_dtype: 'float16' is not one of float32, bfloat16"):
        EncoderOptions.from_config(ModelConfig(encoder_dtype="float16"))
    with pytest.raises(ConfigError, match="model.encoder_dtype"):
        FrozenTextEncoder(dtype="int8")
