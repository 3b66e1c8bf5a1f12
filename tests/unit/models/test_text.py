"""The frozen text encoder on the packaged MiniLM."""

import pytest
import torch

from groprompt.models.text import FrozenTextEncoder


@pytest.fixture(scope="module")
def encoder() -> FrozenTextEncoder:
    return FrozenTextEncoder()


def test_shapes_mask_and_pooling(encoder: FrozenTextEncoder) -> None:
    features = encoder(["the red circle", "a dog jumping over the fence on the left"])
    assert features.tokens.shape[0] == 2 and features.tokens.shape[2] == encoder.dim == 384
    lengths = features.mask.sum(1).tolist()
    assert lengths[0] < lengths[1] == features.tokens.shape[1]
    assert torch.all(features.tokens[0, lengths[0] :] == 0)
    assert torch.allclose(features.pooled.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_semantics_and_cache_consistency(encoder: FrozenTextEncoder) -> None:
    alone = encoder(["the red circle"]).pooled[0]
    batched = encoder(["a blue square moving up", "the red circle"]).pooled[1]
    assert torch.allclose(alone, batched)
    close = encoder(["a red circle"]).pooled[0]
    far = encoder(["the train leaving the station"]).pooled[0]
    assert alone @ close > alone @ far


def test_frozen_and_stays_in_eval(encoder: FrozenTextEncoder) -> None:
    encoder.train()
    assert not encoder.model.training
    assert not any(p.requires_grad for p in encoder.parameters())


def test_missing_folder_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        FrozenTextEncoder(tmp_path)


def test_a_sentences_features_do_not_depend_on_the_sentences_first_encoded_with_it() -> None:
    """Each sentence is encoded alone, so a run resumed with an empty cache sees exactly the features it had."""
    sentence = "the red circle"
    first, second = FrozenTextEncoder(), FrozenTextEncoder()
    alone = first([sentence])
    together = second(["a dog jumping over the fence on the left", sentence])
    assert torch.equal(together.pooled[1], alone.pooled[0])
    assert torch.equal(together.tokens[1, : int(together.mask[1].sum())], alone.tokens[0])
