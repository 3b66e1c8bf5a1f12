"""A trained model logged to MLflow (SQLite store) and read back with ``load_trained("mlflow:<run>")``, then rebuilt."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from mlflow import MlflowClient
from torch import nn

from groprompt.checkpoints import (
    TrainedWeights,
    build_trained_model,
    load_trained,
    log_trained_model,
    random_weights,
    save_payload,
    training_payload,
    with_model_of,
)
from groprompt.config import Config, ModelConfig, replace, to_dict
from groprompt.errors import CheckpointError
from groprompt.models.frozen import FrozenEncoders, build_frozen
from groprompt.models.groprompt import build_model
from groprompt.tracking import start_run
from tests.helpers import tracked_config

MODEL = ModelConfig(sam="tiny", d_model=32, decoder_layers=2, num_heads=2, ffn_dim=64, num_queries=6)
EXPERIMENT = "unit-checkpoints"


class DistributedWrapper(nn.Module):
    """Holds the model as ``module``, so its state-dict keys carry the ``module.`` prefix, as DistributedDataParallel's do."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module


@pytest.fixture(scope="module")
def frozen() -> FrozenEncoders:
    return build_frozen(MODEL)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Config]:
    """The tiny model logging to a fresh SQLite store whose experiment keeps its artifacts in tmp."""
    with tracked_config(tmp_path_factory, EXPERIMENT, replace(Config(), model=to_dict(MODEL))) as config:
        yield config


@pytest.fixture(scope="module")
def trained(frozen: FrozenEncoders, config: Config, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, torch.Tensor]]:
    """A run with a logged model whose weights are NOT those a fresh ``build_model`` draws; its id and those weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        model = build_model(MODEL, frozen)
    with torch.no_grad():
        for index, parameter in enumerate(model.parameters()):
            parameter.add_(0.5 + index)  # far from any initialisation
    expected = {name: value.clone() for name, value in model.state_dict().items()}
    wrapped = DistributedWrapper(model)
    optimizer = torch.optim.AdamW(wrapped.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    payload = training_payload(wrapped, optimizer, scheduler, epoch=2)
    assert all(key.startswith("module.") for key in payload["model"])  # what the training loop saves under DDP
    checkpoint = save_payload(tmp_path_factory.mktemp("payload"), payload)

    run_id = start_run(config, "trained")
    log_trained_model(run_id, checkpoint, config, config.runtime.tracking_uri)
    return run_id, expected


def test_the_run_holds_the_checkpoint_and_the_model(config: Config, trained: tuple[str, dict[str, torch.Tensor]]) -> None:
    run_id, _ = trained
    client = MlflowClient(config.runtime.tracking_uri)
    assert {a.path for a in client.list_artifacts(run_id)} == {"checkpoint", "model"}
    assert [a.path for a in client.list_artifacts(run_id, "checkpoint")] == ["checkpoint/checkpoint.pt"]
    assert {a.path for a in client.list_artifacts(run_id, "model")} == {"model/model_state.pt", "model/config.yaml"}


def test_load_trained_reads_the_logged_model_without_the_ddp_prefix(config: Config, trained: tuple[str, dict[str, torch.Tensor]]) -> None:
    run_id, expected = trained
    weights = load_trained(f"mlflow:{run_id}", config.runtime.tracking_uri)
    assert weights.model_id == f"mlflow:{run_id}"
    assert weights.model_config == MODEL
    assert weights.state is not None
    assert set(weights.state) == set(expected)
    assert not any(key.startswith("module.") for key in weights.state)
    for name, value in expected.items():
        assert torch.equal(weights.state[name], value), name


def test_with_model_of_takes_the_logged_model_section(config: Config, trained: tuple[str, dict[str, torch.Tensor]]) -> None:
    weights = load_trained(f"mlflow:{trained[0]}", config.runtime.tracking_uri)
    other = replace(Config(), **{"model.d_model": 256, "model.num_queries": 50, "train.lr": 0.5, "data.root": "/elsewhere"})
    combined = with_model_of(other, weights)
    assert combined.model == MODEL
    assert combined.train.lr == 0.5 and combined.data.root == "/elsewhere"  # the rest is the caller's


def test_with_model_of_keeps_the_configuration_when_the_weights_record_no_model() -> None:
    config = replace(Config(), **{"model.d_model": 48})
    assert with_model_of(config, random_weights(3)) == config
    assert with_model_of(config, TrainedWeights({}, None, "sha256:abc")).model.d_model == 48


def test_build_trained_model_loads_the_logged_weights_in_evaluation_mode(
    config: Config, trained: tuple[str, dict[str, torch.Tensor]], frozen: FrozenEncoders
) -> None:
    run_id, expected = trained
    weights = load_trained(f"mlflow:{run_id}", config.runtime.tracking_uri)
    assert weights.model_config is not None
    encoders, model = build_trained_model(weights.model_config, weights, frozen)
    assert encoders is frozen
    assert not model.training and not any(module.training for module in model.modules())
    assert not any(parameter.requires_grad for parameter in model.parameters())
    state = model.state_dict()
    assert set(state) == set(expected)
    for name, value in expected.items():
        assert torch.equal(state[name], value), name


def test_build_trained_model_without_a_state_keeps_the_seeded_initialisation(frozen: FrozenEncoders) -> None:
    _, first = build_trained_model(MODEL, random_weights(5), frozen, seed=5)
    _, again = build_trained_model(MODEL, random_weights(5), frozen, seed=5)
    _, other = build_trained_model(MODEL, random_weights(6), frozen, seed=6)
    a, b, c = first.state_dict(), again.state_dict(), other.state_dict()
    assert all(torch.equal(a[name], b[name]) for name in a)
    assert any(not torch.equal(a[name], c[name]) for name in a)


def test_a_state_of_the_wrong_shape_is_a_checkpoint_error_naming_the_model(frozen: FrozenEncoders) -> None:
    with torch.random.fork_rng(devices=[]):
        state = build_model(MODEL, frozen).state_dict()
    name = next(key for key, value in state.items() if value.dim() == 2)
    state[name] = torch.zeros(state[name].shape[0] + 1, state[name].shape[1])
    with pytest.raises(CheckpointError) as caught:
        build_trained_model(MODEL, TrainedWeights(state, None, "sha256:0123abcd"), frozen)
    assert "sha256:0123abcd" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_weights_of_another_model_size_are_a_checkpoint_error(
    config: Config, trained: tuple[str, dict[str, torch.Tensor]], frozen: FrozenEncoders
) -> None:
    run_id, _ = trained
    weights = load_trained(f"mlflow:{run_id}", config.runtime.tracking_uri)
    with pytest.raises(CheckpointError, match=f"mlflow:{run_id}"):
        build_trained_model(replace(Config(), model=to_dict(MODEL), **{"model.d_model": 48}).model, weights, frozen)


def test_a_missing_key_is_a_checkpoint_error(frozen: FrozenEncoders) -> None:
    with torch.random.fork_rng(devices=[]):
        state = build_model(MODEL, frozen).state_dict()
    state.pop(next(iter(state)))
    with pytest.raises(CheckpointError, match="random-less"):
        build_trained_model(MODEL, TrainedWeights(state, None, "random-less"), frozen)


def test_an_unknown_run_is_a_checkpoint_error_naming_it(config: Config) -> None:
    unknown = "0123456789abcdef0123456789abcdef"
    with pytest.raises(CheckpointError) as caught:
        load_trained(f"mlflow:{unknown}", config.runtime.tracking_uri)
    assert f"mlflow:{unknown}" in str(caught.value)


def test_a_run_without_a_logged_model_is_a_checkpoint_error(config: Config) -> None:
    run_id = start_run(config, "no-model")
    with pytest.raises(CheckpointError) as caught:
        load_trained(f"mlflow:{run_id}", config.runtime.tracking_uri)
    assert f"mlflow:{run_id}" in str(caught.value)
