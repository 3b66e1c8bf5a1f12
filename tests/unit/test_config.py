"""Configuration loading, merging, overrides and errors."""

import pytest
import yaml

from groprompt.config import Config, flatten, load_config, replace
from groprompt.data.formats import check_training_splits
from groprompt.errors import ConfigError
from tests.helpers import REPO_ROOT

CONF = REPO_ROOT / "conf"


def test_defaults_are_the_papers() -> None:
    config = load_config([CONF / "base.yaml"])
    assert (config.loss.lambda_r, config.loss.lambda_g, config.loss.lambda_f, config.loss.lambda_v) == (5, 2, 0.01, 0.1)
    assert (config.train.epochs, config.train.lr, config.model.decoder_layers) == (12, 1e-4, 6)
    assert config.loss.margin == 0.0


def test_defaults_chain_and_overrides() -> None:
    assert load_config([], ["train.lr=1e-3"]).train.lr == 1e-3  # YAML 1.1 reads this as a string
    config = load_config([CONF / "tiny.yaml"], ["train.lr=0.5", "loss.textcon=false", "model.sam_checkpoint=/x/y.pth", "data.window=7"])
    assert config.model.sam == "tiny" and config.model.decoder_layers == 2  # from model/tiny.yaml
    assert config.loss.lambda_f == 0.01  # from base.yaml
    assert config.train.lr == 0.5 and config.loss.textcon is False and config.data.window == 7
    assert config.model.sam_checkpoint == "/x/y.pth"


def written_values(tree: dict, prefix: str = "") -> dict[str, object]:
    """The leaves of a YAML mapping as ``{"section.key": value}`` (lists as tuples, as the dataclasses hold them)."""
    leaves: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            leaves.update(written_values(value, f"{prefix}{key}."))
        else:
            leaves[f"{prefix}{key}"] = tuple(value) if isinstance(value, list) else value
    return leaves


def test_every_shipped_file_loads_with_the_values_it_writes() -> None:
    """Each file's own keys (read here with plain yaml, its ``defaults`` aside) win over its defaults and are loaded as
    written."""
    paths = sorted(CONF.rglob("*.yaml"))
    assert len(paths) >= 15
    for path in paths:
        written = yaml.safe_load(path.read_text())
        written.pop("defaults", None)
        leaves = written_values(written)
        assert leaves, path
        loaded = flatten(load_config([path]))
        assert {key: loaded[key] for key in leaves} == leaves, path


def test_demo_chain_and_overrides_give_the_hand_written_values() -> None:
    """demo.yaml -> tiny.yaml -> base.yaml, model/tiny.yaml, data/refshapes.yaml: the later file wins, an override wins
    over every file, and a key no file names keeps the dataclass default."""
    flat = flatten(load_config([CONF / "demo.yaml"], ["train.lr=0.25", "loss.lambda_v=0", "data.window=5"]))
    expected = {
        "model.sam": "tiny",  # model/tiny.yaml over base.yaml's vit_b
        "model.d_model": 64,  # demo.yaml over model/tiny.yaml's 128 over base.yaml's 256
        "model.decoder_layers": 2,  # model/tiny.yaml over base.yaml's 6
        "model.num_heads": 4,  # model/tiny.yaml
        "model.ffn_dim": 128,  # demo.yaml over model/tiny.yaml's 256
        "model.num_queries": 10,  # model/tiny.yaml over base.yaml's 50
        "model.sam_checkpoint": None,  # base.yaml
        "model.proposal": "sam-decoder",  # no file: the default
        "loss.lambda_r": 5.0,  # base.yaml
        "loss.lambda_f": 0.01,  # base.yaml
        "loss.lambda_v": 0.0,  # the override over base.yaml's 0.1
        "loss.lambda_conf": 1.0,  # no file: the default
        "data.format": "refshapes",  # data/refshapes.yaml
        "data.split": "train-fit",  # demo.yaml over data/refshapes.yaml's train
        "data.val_split": "train-holdout",  # demo.yaml over data/refshapes.yaml's valid
        "data.window": 5,  # the override over demo.yaml's 8 over data/refshapes.yaml's 36
        "data.max_side": 256,  # both write 256
        "data.shard_bytes": 2097152,  # demo.yaml: 2 MiB
        "data.clip_len": 2,  # demo.yaml over data/refshapes.yaml's 4
        "data.embed_dtype": "float16",  # no file: the default
        "train.epochs": 1,  # demo.yaml over tiny.yaml's 4 over base.yaml's 12
        "train.lr": 0.25,  # the override over demo.yaml's 2e-3, tiny.yaml's 3e-4, base.yaml's 1e-4
        "train.batch_size": 16,  # demo.yaml over tiny.yaml's 8
        "train.num_workers": 2,  # base.yaml
        "train.weight_decay": 1e-4,  # no file: the default
        "sweep.lambda_f": (0.0, 0.01),  # no sweep file in the chain: the default
    }
    assert {key: flat[key] for key in expected} == expected
    assert isinstance(flat["train.lr"], float) and isinstance(flat["loss.lambda_v"], float)  # "0" read as a float


def test_sweep_lists() -> None:
    config = load_config([CONF / "sweep" / "grid.yaml"])
    assert 0.01 in config.sweep.lambda_f and 0.1 in config.sweep.lambda_v  # the paper's values
    with pytest.raises(ConfigError, match="sweep.lambda_f"):
        load_config([], ["sweep.lambda_f=0.1"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.lrr=1", "train.lrr"),
        ("nosection.x=1", "nosection"),
        ("train.epochs=many", "train.epochs"),
        ("train.epochs", "expected key.sub=value"),
    ],
)
def test_bad_overrides_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config([], [override])


def test_unknown_key_in_a_file_names_it(tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("loss:\n  lambda_q: 1\n")
    with pytest.raises(ConfigError, match="loss.lambda_q"):
        load_config([path])
    with pytest.raises(ConfigError, match="not found"):
        load_config([tmp_path / "missing.yaml"])


def test_replace_and_flatten() -> None:
    config = replace(Config(), **{"loss.lambda_f": 0.5})
    assert config.loss.lambda_f == 0.5
    flat = flatten(config)
    assert flat["loss.lambda_f"] == 0.5 and flat["train.epochs"] == 12


def test_relative_paths_become_absolute(tmp_path) -> None:
    from groprompt.config import with_absolute_paths

    config = with_absolute_paths(load_config([], ["data.shards=work/s", "model.sam_checkpoint=s3://b/k.pth"]), base=tmp_path)
    assert config.data.shards == str(tmp_path / "work" / "s")
    assert config.model.sam_checkpoint == "s3://b/k.pth" and config.model.text_encoder is None


def data_config(name: str, *overrides: str) -> Config:
    """``base.yaml`` with one of ``conf/data/*.yaml``, and overrides."""
    return load_config([CONF / "base.yaml", CONF / "data" / f"{name}.yaml"], list(overrides))


@pytest.mark.parametrize(
    "name, split, val_split",
    [("ref-youtube-vos", "train-fit", "train-holdout"), ("a2d-sentences", "train-fit", "train-holdout"), ("refshapes", "train", "valid")],
)
def test_trainable_configurations_validate_on_held_out_training_videos(name: str, split: str, val_split: str) -> None:
    data = data_config(name).data
    assert (data.split, data.val_split) == (split, val_split)
    check_training_splits(data)
    for path in ("tiny.yaml", "demo.yaml"):
        check_training_splits(load_config([CONF / path]).data)


@pytest.mark.parametrize("name, val_split", [("ref-davis17", "valid"), ("jhmdb-sentences", "test")])
def test_evaluation_only_configurations_refuse_training(name: str, val_split: str) -> None:
    data = data_config(name).data
    assert data.split is None and data.val_split == val_split  # val_split: the default evaluation split
    with pytest.raises(ConfigError, match=r"^data\.split is null: this .* configuration is for evaluation only") as error:
        check_training_splits(data)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "name, overrides, message",
    [
        ("a2d-sentences", ["data.val_split=test"], r"^data\.val_split: 'test' is a test split of a2d-sentences"),
        ("a2d-sentences", ["data.split=test"], r"^data\.split: 'test' is a test split of a2d-sentences"),
        ("ref-youtube-vos", ["data.val_split=valid"], r"^data\.val_split: 'valid' is a test split of ref-youtube-vos"),
        ("ref-davis17", ["data.split=train-fit"], r"^data\.val_split: 'valid' is a test split of ref-davis17"),
        ("ref-youtube-vos", ["data.split=train"], r"^data\.val_split: 'train-holdout' may share videos with data\.split 'train'"),
        ("a2d-sentences", ["data.val_split=train-holdout-20pct"], r"^data\.val_split: 'train-holdout-20pct' may share videos"),
        ("refshapes", ["data.val_split=train"], r"^data\.val_split: 'train' may share videos with data\.split 'train'"),
        ("ref-youtube-vos", ["data.val_split=train-holdout-0pct"], r"^data\.val_split: split 'train-holdout-0pct': the held-out share"),
    ],
)
def test_training_or_selecting_on_test_or_training_videos_is_refused(name: str, overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        check_training_splits(data_config(name, *overrides).data)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.epochs=0", "train.epochs: must be at least 1, got 0"),
        ("train.lr=-1", "train.lr: must be > 0, got -1.0"),
        ("train.batch_size=0", "train.batch_size: must be at least 1, got 0"),
        ("data.clip_len=0", "data.clip_len: must be at least 1, got 0"),
        ("data.embed_dtype=int8", "data.embed_dtype: must be one of float16, bfloat16, float32, got 'int8'"),
        ("sweep.mode=random", "sweep.mode: must be one of grid, loguniform, got 'random'"),
        ("sweep.reduction_factor=1", "sweep.reduction_factor: must be at least 2, got 1"),
        ("loss.lambda_f=-0.1", "loss.lambda_f: must be >= 0, got -0.1"),
    ],
)
def test_values_are_checked_when_loaded(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config([], [override])
    assert str(caught.value) == message


def test_replace_checks_values_too() -> None:
    with pytest.raises(ConfigError, match="train.epochs"):
        replace(Config(), **{"train.epochs": 0})
