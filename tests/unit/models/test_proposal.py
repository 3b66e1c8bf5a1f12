"""The proposal generator: shapes, online causality, propagation, and the paper-size parameter count."""

import math
from dataclasses import replace

import pytest
import torch

from groprompt.config import ModelConfig, load_config
from groprompt.errors import ConfigError
from groprompt.models.generator import FrameOutput
from groprompt.models.groprompt import GroPrompt
from groprompt.models.modalcon import ModalConHead
from groprompt.models.proposal import ProposalGenerator, count_trainable, grid_centres, local_correlation
from groprompt.models.text import TextFeatures
from tests.helpers import REPO_ROOT

TINY = ModelConfig(sam="tiny", d_model=32, decoder_layers=2, num_heads=2, ffn_dim=64, num_queries=5)


def random_text(batch: int, length: int = 6, dim: int = 24) -> TextFeatures:
    mask = torch.ones(batch, length, dtype=torch.bool)
    mask[0, 4:] = False
    return TextFeatures(torch.randn(batch, length, dim), mask, torch.randn(batch, dim))


@pytest.fixture
def generator() -> ProposalGenerator:
    torch.manual_seed(0)
    return ProposalGenerator(TINY, image_dim=16, grid=8, text_dim=24).eval()


def test_output_shapes_and_ranges(generator: ProposalGenerator) -> None:
    outputs = generator(torch.randn(2, 3, 16, 8, 8), random_text(2))
    assert len(outputs) == 3
    first, later = outputs[0], outputs[1]
    assert first.boxes.shape == (3, 2, 5, 4)  # levels = 1 + decoder layers
    assert later.boxes.shape == (3, 2, 6, 4)  # plus the propagated query
    assert first.token_logits.shape == (2, 64)
    assert torch.all((later.boxes >= 0) & (later.boxes <= 1))
    assert later.top_boxes().shape == (2, 4)


def test_online_frames_never_see_the_future(generator: ProposalGenerator) -> None:
    text = random_text(2)
    clip = torch.randn(2, 4, 16, 8, 8)
    changed = clip.clone()
    changed[:, 2:] = torch.randn(2, 2, 16, 8, 8)
    before = generator(clip, text)
    after = generator(changed, text)
    for t in range(2):
        assert torch.equal(before[t].boxes, after[t].boxes)
    assert not torch.equal(before[2].boxes, after[2].boxes)


def test_propagation_carries_the_previous_frame(generator: ProposalGenerator) -> None:
    text = random_text(2)
    clip = torch.randn(2, 2, 16, 8, 8)
    other_past = clip.clone()
    other_past[:, 0] = torch.randn(2, 16, 8, 8)
    assert not torch.equal(generator(clip, text)[1].boxes, generator(other_past, text)[1].boxes)
    isolated = ProposalGenerator(ModelConfig(**{**TINY.__dict__, "propagate": False, "frame_difference": False}), 16, 8, 24).eval()
    isolated.load_state_dict({**generator.state_dict(), "visual_proj.0.weight": generator.visual_proj[0].weight[:, :16]})
    assert torch.equal(isolated(clip, text)[1].boxes, isolated(other_past, text)[1].boxes)


def test_motion_input_is_the_difference_from_the_previous_frame(generator: ProposalGenerator) -> None:
    """Frame t's tokens read [e_t, e_t - e_(t-1)]; the first frame has no past and reads [e_0, 0]."""
    clip = torch.randn(1, 2, 16, 8, 8)
    assert torch.equal(generator.visual_input(clip[:, 1], clip[:, 0]), torch.cat([clip[:, 1], clip[:, 1] - clip[:, 0]], dim=1))
    text = random_text(1)
    first = generator(clip, text)[0].token_logits
    visual = generator.project_visual(torch.cat([clip[:, 0], torch.zeros_like(clip[:, 0])], dim=1))
    zero_motion = generator.encode_tokens(visual, generator.project_text(text))
    assert torch.allclose(first, zero_motion.logits, atol=1e-6)


def test_a_clip_reads_the_frame_before_it_as_its_first_frame_s_past(generator: ProposalGenerator) -> None:
    """A training clip cut from inside a video sees the motion from the frame before it, as the online stream does."""
    clip, text = torch.randn(1, 3, 16, 8, 8), random_text(1)
    whole = generator(clip, text)[1].token_logits  # frame 1 of the whole clip: its past is frame 0
    cut = generator(clip[:, 1:], text, previous=clip[:, 0])[0].token_logits
    assert torch.allclose(whole, cut, atol=1e-6)
    assert not torch.allclose(whole, generator(clip[:, 1:], text)[0].token_logits, atol=1e-4)  # without it: no motion


def test_language_guided_selection_depends_on_the_text(generator: ProposalGenerator) -> None:
    clip = torch.randn(1, 1, 16, 8, 8)
    a = generator(clip, random_text(1))[0].token_logits
    b = generator(clip, random_text(1))[0].token_logits
    assert not torch.allclose(a, b)


def test_a_clip_at_once_equals_the_frame_by_frame_stream(generator: ProposalGenerator) -> None:
    """Training runs a clip's tokens and image memory for all frames at once; inference steps frame by frame."""
    text = random_text(2)
    clip = torch.randn(2, 3, 16, 8, 8)
    projected, state = generator.project_text(text), None
    for t, output in enumerate(generator(clip, text)):
        streamed, state = generator.forward_frame(clip[:, t], projected, state)
        assert torch.allclose(streamed.boxes, output.boxes, atol=1e-6)
        assert torch.allclose(streamed.logits, output.logits, atol=1e-5)


def test_clips_shared_by_several_sentences_equal_the_clips_repeated(generator: ProposalGenerator) -> None:
    """P clips for B = 2P sentences (sentence b reads clip b mod P) give what the clips repeated for every sentence give."""
    text = random_text(4)
    clips = torch.randn(2, 3, 16, 8, 8)
    shared, repeated = generator(clips, text), generator(torch.cat([clips, clips]), text)
    for a, b in zip(shared, repeated):
        assert torch.allclose(a.boxes, b.boxes, atol=1e-6) and torch.allclose(a.logits, b.logits, atol=1e-5)
    with pytest.raises(ValueError, match="4 sentences over 3 clips"):
        generator(torch.randn(3, 3, 16, 8, 8), text)


def test_sentence_film_starts_as_the_identity_and_then_reads_the_pooled_sentence() -> None:
    torch.manual_seed(0)
    film = ProposalGenerator(replace(TINY, sentence_film=True), image_dim=16, grid=8, text_dim=24).eval()
    plain = ProposalGenerator(replace(TINY, sentence_film=False), image_dim=16, grid=8, text_dim=24).eval()
    plain.load_state_dict({k: v for k, v in film.state_dict().items() if not k.startswith("film.")})
    text, clip = random_text(2), torch.randn(2, 2, 16, 8, 8)
    assert torch.allclose(film(clip, text)[1].boxes, plain(clip, text)[1].boxes)  # zero-initialised: scale 1, shift 0
    torch.nn.init.normal_(film.film.weight)
    other = TextFeatures(text.tokens, text.mask, torch.randn_like(text.pooled))  # same tokens, another pooled sentence
    assert not torch.allclose(film(clip, text)[1].token_logits, film(clip, other)[1].token_logits)


def test_enhancer_text_attention_reads_the_sentence_tokens() -> None:
    torch.manual_seed(0)
    config = replace(TINY, enhancer_text_attention=True)
    generator = ProposalGenerator(config, image_dim=16, grid=8, text_dim=24).eval()
    assert all(layer.text_attn is not None for layer in generator.enhancer)
    text, clip = random_text(1), torch.randn(1, 1, 16, 8, 8)
    before = generator(clip, text)[0].token_logits
    for layer in generator.enhancer:
        torch.nn.init.zeros_(layer.text_attn.out_proj.weight)
        torch.nn.init.zeros_(layer.text_attn.out_proj.bias)
    assert not torch.allclose(before, generator(clip, text)[0].token_logits)  # the attention's output counted


def _output(final_logits: list[list[float]]) -> FrameOutput:
    """A frame output whose last level has these (B, Q) logits (boxes and token fields are not read)."""
    logits = torch.tensor(final_logits)[None]
    batch, queries = logits.shape[1:]
    return FrameOutput(torch.rand(1, batch, queries, 4), logits, torch.zeros(batch, 1), torch.zeros(1, 2), torch.zeros(batch, 1, 4))


def test_top_score_is_the_sigmoid_of_the_top_logit_whatever_the_number_of_queries() -> None:
    expected = 1 / (1 + math.exp(-2.0))  # the top query's logit is 2.0 in both outputs
    few, many = _output([[0.0, 2.0, -1.0]]), _output([[0.0, 2.0, -1.0, 1.9, -5.0, 1.5]])
    assert few.top_scores().tolist() == pytest.approx([expected]) and many.top_scores().tolist() == pytest.approx([expected])
    assert _output([[-3.0, -4.0]]).top_scores().item() == pytest.approx(1 / (1 + math.exp(3.0)))


def test_grid_centres() -> None:
    assert grid_centres(2).tolist() == [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]]


def test_paper_size_is_about_15m_trainable_parameters() -> None:
    config = load_config([REPO_ROOT / "conf" / "base.yaml", REPO_ROOT / "conf" / "model" / "paper.yaml"])
    proposal = ProposalGenerator(config.model, image_dim=256, grid=64, text_dim=768)  # ViT SAM, BERT-base text
    model = GroPrompt(proposal, ModalConHead(256, 768, num_heads=config.model.num_heads))
    count = count_trainable(model)
    print(f"paper-size GroPrompt: {count / 1e6:.2f}M trainable parameters")
    assert 12e6 < count < 18e6


def test_local_correlation_is_the_cosine_similarity_to_each_neighbour_of_the_previous_frame() -> None:
    torch.manual_seed(0)
    current, previous, radius = torch.randn(2, 3, 4, 5, 6), torch.randn(2, 3, 4, 5, 6), 1
    found = local_correlation(current, previous, radius)
    assert found.shape == (2, 3, 9, 5, 6)
    for y in range(5):
        for x in range(6):
            for index, (dy, dx) in enumerate((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)):
                inside = 0 <= y + dy < 5 and 0 <= x + dx < 6
                expected = (
                    torch.cosine_similarity(current[..., y, x], previous[..., y + dy, x + dx], dim=-1) if inside else torch.zeros(2, 3)
                )
                assert torch.allclose(found[..., index, y, x], expected, atol=1e-6), (y, x, dy, dx)


@pytest.mark.parametrize("changes", [{"visual_kernel": 3}, {"motion_correlation": 2}])
def test_the_motion_path_variants_keep_clips_and_streams_equal(changes: dict[str, int]) -> None:
    """With a wider visual kernel or the local correlation, a clip at once still equals the frame-by-frame stream, and
    a token's input now depends on its neighbours in frame t-1."""
    torch.manual_seed(0)
    generator = ProposalGenerator(replace(TINY, **changes), image_dim=16, grid=8, text_dim=24).eval()
    text, clip = random_text(2), torch.randn(2, 3, 16, 8, 8)
    projected, state = generator.project_text(text), None
    for t, output in enumerate(generator(clip, text)):
        streamed, state = generator.forward_frame(clip[:, t], projected, state)
        assert torch.allclose(streamed.boxes, output.boxes, atol=1e-6)
    moved = clip[:, 0].clone()
    moved[..., 0, 1] += 1.0  # frame t-1 changes at cell (0, 1) only
    convolution = generator.visual_proj[0]  # before the group norm, whose statistics span every token
    visual = convolution(generator.visual_input(clip[:, 1], clip[:, 0]))
    changed = convolution(generator.visual_input(clip[:, 1], moved))
    differs = (visual - changed).abs().amax(1)[0] > 0
    assert differs[0, 0] and differs[0, 1] and differs[1, 2] and not differs[4, 4]


def test_an_even_visual_kernel_is_refused() -> None:
    with pytest.raises(ConfigError, match="model.visual_kernel"):
        replace(TINY, visual_kernel=2)
