"""Frozen configuration dataclasses, loaded from YAML with dotted command-line overrides.

A YAML file may name other files under ``defaults:`` (paths relative to it); they are merged first,
in order, so ``conf/demo.yaml`` can build on ``conf/base.yaml``. Overrides look like
``train.lr=3e-4``. Any key that no dataclass declares is an error naming the key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from groprompt.errors import ConfigError
from groprompt.files import absolute_location

EMBED_DTYPES = ("float16", "bfloat16", "float32")
PROPOSALS = ("sam-decoder", "grounding-dino")
SELECTION_LOSSES = ("bce", "softmax")
FREEZE_GROUPS = ("backbone", "text", "encoder")  # Grounding DINO: image backbone, text encoder (BERT), feature enhancer
SWEEP_MODES = ("grid", "loguniform")


def _require(condition: bool, key: str, rule: str, value: Any) -> None:
    """A configuration value that breaks its rule is an error naming the key, the rule and the value."""
    if not condition:
        raise ConfigError(f"{key}: {rule}, got {value!r}")


@dataclass(frozen=True)
class ModelConfig:
    """The frozen SAM and text encoder, and the size of the trainable proposal generator."""

    sam: str = "tiny"  # vit_h | vit_l | vit_b | a tiny test configuration (see models/sam.py)
    sam_checkpoint: str | None = None  # official state-dict file; None = random weights
    sam_seed: int = 0  # seed of the random weights when there is no checkpoint
    allow_random_weights: bool = False  # a full-size SAM (vit_b/l/h) without sam_checkpoint is refused unless true
    text_encoder: str | None = None  # local Hugging Face folder; None = packaged all-MiniLM-L6-v2
    d_model: int = 256
    decoder_layers: int = 6
    num_heads: int = 8
    ffn_dim: int = 2048
    num_queries: int = 50
    dropout: float = 0.0
    propagate: bool = True  # online query propagation from frame t-1
    enhancer_layers: int = 1  # feature enhancer: self-attention over a frame's text-fused visual tokens (position is relative)
    frame_difference: bool = True  # each visual token also sees its embedding minus frame t-1's (motion); zero on frame 0
    visual_kernel: int = 1  # the visual projection's kernel: 1 reads each cell alone, 3 also its neighbours (which way a difference moved)
    motion_correlation: int = 0  # radius r: each token also sees its cosine similarity to frame t-1's tokens within r cells (0: off)
    sentence_film: bool = True  # the pooled sentence scales and shifts every visual token (FiLM) before the text fusion
    enhancer_text_attention: bool = True  # each enhancer layer also cross-attends from the tokens to the sentence's tokens
    encoder_dtype: str = "float32"  # frozen SAM image and text encoders: float32 | bfloat16 (autocast; in the embedding identity)
    encoder_sdpa: bool = False  # SAM image-encoder attention through scaled_dot_product_attention (same result)
    encoder_channels_last: bool = False  # channels-last convolutions in the SAM image encoder
    encoder_compile: bool = False  # torch.compile the SAM image encoder (compiles on the first batch)
    proposal: str = "sam-decoder"  # the proposal generator: sam-decoder | grounding-dino (the paper's)
    proposal_weights: str | None = None  # grounding-dino: local save_pretrained folder (config, weights, tokenizer, processor)
    freeze: tuple[str, ...] = FREEZE_GROUPS  # grounding-dino parts kept frozen (run under no_grad): backbone, text, encoder
    proposal_image_size: int = 800  # grounding-dino: frames are resized to this square side (pixels)
    segmentor_weights: str | None = None  # sam-hq / sam2 segmentor: local save_pretrained folder (config, weights, processor)
    segmentor_dtype: str = "float32"  # sam-hq / sam2 segmentor weights and activations: float32 | bfloat16 | float16
    sam2_prompt_score: float = 0.5  # sam2: a box prompts SAM 2 (over its memory) when the generator's confidence reaches this
    multi_object: bool = False  # set mode: a box per object a sentence names (Hungarian-matched); off: one box, the union's
    set_score_threshold: float = 0.5  # set mode: the boxes whose confidence reaches this are kept and their masks unioned

    def __post_init__(self) -> None:
        _require(self.proposal in PROPOSALS, "model.proposal", f"must be one of {', '.join(PROPOSALS)}", self.proposal)
        _require(set(self.freeze) <= set(FREEZE_GROUPS), "model.freeze", f"entries must be among {', '.join(FREEZE_GROUPS)}", self.freeze)
        _require(
            "encoder" not in self.freeze or {"backbone", "text"} <= set(self.freeze),
            "model.freeze",
            "a frozen encoder needs a frozen backbone and text encoder (no gradient reaches them through it)",
            self.freeze,
        )
        _require(
            self.visual_kernel >= 1 and self.visual_kernel % 2 == 1,
            "model.visual_kernel",
            "must be a positive odd number",
            self.visual_kernel,
        )
        _require(self.motion_correlation >= 0, "model.motion_correlation", "must be 0 (off) or a radius in cells", self.motion_correlation)
        _require(self.proposal_image_size >= 32, "model.proposal_image_size", "must be at least 32", self.proposal_image_size)
        _require(self.enhancer_layers >= 0, "model.enhancer_layers", "must be >= 0", self.enhancer_layers)
        dtypes = f"must be one of {', '.join(EMBED_DTYPES)}"
        _require(self.segmentor_dtype in EMBED_DTYPES, "model.segmentor_dtype", dtypes, self.segmentor_dtype)
        _require(0 <= self.sam2_prompt_score <= 1, "model.sam2_prompt_score", "must be in [0, 1]", self.sam2_prompt_score)
        _require(0 <= self.set_score_threshold <= 1, "model.set_score_threshold", "must be in [0, 1]", self.set_score_threshold)


SEGMENTOR_KEYS = ("segmentor_weights", "segmentor_dtype", "sam2_prompt_score", "set_score_threshold")
"""ModelConfig keys that choose how boxes become masks, not the trained model: a run keeps its own (``with_model_of``)."""


@dataclass(frozen=True)
class LossConfig:
    """Loss weights (paper eq. 1-4) and switches for ablations."""

    lambda_r: float = 5.0
    lambda_g: float = 2.0
    lambda_f: float = 0.01
    lambda_v: float = 0.1
    lambda_conf: float = 1.0  # confidence head (trained here since no detector supplies it)
    lambda_select: float = 1.0  # language-guided query-selection scores
    selection: str = "softmax"  # the selection loss: bce (balanced, per token) | softmax (over the frame's tokens, onto those in the box)
    margin: float = 0.0  # triplet margin; the paper uses none
    textcon: bool = True
    modalcon: bool = True
    lambda_aux: float = 1.0  # deep supervision: the box loss on earlier decoder layers, a separate term (0 = off)

    def __post_init__(self) -> None:
        for name in ("lambda_r", "lambda_g", "lambda_f", "lambda_v", "lambda_conf", "lambda_select", "margin", "lambda_aux"):
            _require(getattr(self, name) >= 0, f"loss.{name}", "must be >= 0", getattr(self, name))
        _require(self.selection in SELECTION_LOSSES, "loss.selection", f"must be one of {', '.join(SELECTION_LOSSES)}", self.selection)


@dataclass(frozen=True)
class DataConfig:
    """Where a dataset lives and how it is cut into shards and clips."""

    format: str = "refshapes"  # ref-youtube-vos | ref-davis17 | a2d-sentences | jhmdb-sentences | mevis | refshapes
    root: str = "data/refshapes"
    split: str | None = "train"  # the training split; null: an evaluation-only configuration (training and sweeps refused)
    val_split: str = "valid"  # validation during training (never a test split) and the default evaluation split
    shards: str = "work/shards"
    embeddings: str = "work/embeddings"
    embed_dtype: str = "float16"  # storage dtype of the cached SAM embeddings
    embed_batch: int = 4  # frames per SAM encoder pass (ViT-B on CPU holds about 2.5 GiB per frame); raise it on GPUs
    window: int = 36  # frames per shard sample; longer videos are split
    max_side: int = 1024  # longest side of the JPEG frames stored in shards
    shard_bytes: int = 256 * 1024 * 1024
    clip_len: int = 4  # frames per training clip

    def __post_init__(self) -> None:
        _require(self.embed_dtype in EMBED_DTYPES, "data.embed_dtype", f"must be one of {', '.join(EMBED_DTYPES)}", self.embed_dtype)
        for name in ("embed_batch", "window", "max_side", "shard_bytes", "clip_len"):
            _require(getattr(self, name) >= 1, f"data.{name}", "must be at least 1", getattr(self, name))


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and the Ray Train run."""

    epochs: int = 12
    lr: float = 1e-4
    weight_decay: float = 1e-4
    batch_size: int = 8
    grad_clip: float = 0.1
    num_workers: int = 2
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    seed: int = 0
    max_failures: int = 1
    storage_path: str = "work/ray_results"
    name: str = "groprompt"

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "num_workers"):
            _require(getattr(self, name) >= 1, f"train.{name}", "must be at least 1", getattr(self, name))
        for name in ("lr", "cpus_per_worker"):
            _require(getattr(self, name) > 0, f"train.{name}", "must be > 0", getattr(self, name))
        for name in ("weight_decay", "grad_clip", "max_failures"):
            _require(getattr(self, name) >= 0, f"train.{name}", "must be >= 0", getattr(self, name))
        _require(bool(self.name.strip()), "train.name", "must not be empty", self.name)


@dataclass(frozen=True)
class RuntimeConfig:
    """Services and machine settings."""

    tracking_uri: str | None = None  # None = $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db
    experiment: str = "groprompt"
    artifact_location: str | None = None  # a new experiment's artifact folder or bucket URI; None = MLflow's (./mlruns or the server's)
    ray_address: str | None = None  # None = the running cluster if any, else a local Ray
    torch_threads: int = 0  # 0 = the cores this process may use


@dataclass(frozen=True)
class SweepConfig:
    """A Ray Tune search over the contrastive loss weights (``conf/sweep/*.yaml``)."""

    mode: str = "grid"  # grid | loguniform
    lambda_f: tuple[float, ...] = (0.0, 0.01)  # grid values, or (low, high) for loguniform
    lambda_v: tuple[float, ...] = (0.0, 0.1)
    num_samples: int = 1  # loguniform draws (grid: repeats of the whole grid)
    grace_period: int = 1  # ASHA: epochs before a trial may be stopped
    reduction_factor: int = 2
    cpus_per_trial: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        _require(self.mode in SWEEP_MODES, "sweep.mode", f"must be one of {', '.join(SWEEP_MODES)}", self.mode)
        for name in ("num_samples", "grace_period"):
            _require(getattr(self, name) >= 1, f"sweep.{name}", "must be at least 1", getattr(self, name))
        _require(self.reduction_factor >= 2, "sweep.reduction_factor", "must be at least 2", self.reduction_factor)
        _require(self.cpus_per_trial > 0, "sweep.cpus_per_trial", "must be > 0", self.cpus_per_trial)


@dataclass(frozen=True)
class Config:
    """The whole configuration of a run."""

    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)


def load_config(paths: list[str | Path] | tuple[str | Path, ...] = (), overrides: list[str] = ()) -> Config:
    """Merge the YAML files in order, apply ``key.sub=value`` overrides, and build a ``Config``."""
    tree: dict[str, Any] = {}
    for path in paths:
        _merge(tree, _read_yaml_with_defaults(Path(path), seen=()))
    for item in overrides:
        key, value = _parse_override(item)
        _set_dotted(tree, key, value)
    return _build(Config, tree, prefix="")


def from_dict(tree: dict[str, Any]) -> Config:
    """Build a ``Config`` from nested dictionaries (as ``to_dict`` writes them)."""
    return _build(Config, tree, prefix="")


PATH_KEYS = (
    "data.root",
    "data.shards",
    "data.embeddings",
    "train.storage_path",
    "model.sam_checkpoint",
    "model.text_encoder",
    "model.proposal_weights",
    "model.segmentor_weights",
    "runtime.artifact_location",
)


def with_absolute_paths(config: Config, base: Path | None = None) -> Config:
    """Resolve relative paths against ``base`` (default: the working folder), as remote workers run elsewhere."""
    changes = {}
    for key in PATH_KEYS:
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        if value is not None:
            changes[key] = str(absolute_location(value, base))
    return replace(config, **changes)


def replace(config: Config, **changes: Any) -> Config:
    """Return a copy with dotted keys changed, e.g. ``replace(cfg, **{"loss.lambda_f": 0.1})``."""
    tree = to_dict(config)
    for key, value in changes.items():
        _set_dotted(tree, key, value)
    return _build(Config, tree, prefix="")


def to_dict(config: Any) -> dict[str, Any]:
    """The configuration as nested plain dictionaries."""
    return dataclasses.asdict(config)


def flatten(config: Config) -> dict[str, Any]:
    """The configuration as ``{"section.key": value}``, as logged to MLflow."""
    return {f"{section}.{key}": value for section, values in to_dict(config).items() for key, value in values.items()}


def _read_yaml_with_defaults(path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: configuration file not found")
    resolved = path.resolve()
    if resolved in seen:
        raise ConfigError(f"{path}: circular 'defaults'")
    try:
        content = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from error
    if not isinstance(content, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    tree: dict[str, Any] = {}
    for parent in content.pop("defaults", []) or []:
        _merge(tree, _read_yaml_with_defaults(path.parent / parent, seen + (resolved,)))
    _merge(tree, content)
    return tree


def _merge(into: dict[str, Any], other: dict[str, Any]) -> None:
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _parse_override(item: str) -> tuple[str, Any]:
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {item!r}: expected key.sub=value")
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"unknown configuration key: {key}")
    node[parts[-1]] = value


def _build(cls: type, values: Any, prefix: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'configuration'}: expected a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown configuration key: {_first_path(prefix + unknown[0], values[unknown[0]])}")
    kwargs = {}
    for name, value in values.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, prefix=f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(value, hint, f"{prefix}{name}")
    return cls(**kwargs)


def _first_path(key: str, value: Any) -> str:
    """``key`` extended by the first nested key of ``value`` at each level: the whole dotted name a user wrote."""
    while isinstance(value, dict) and value:
        first = next(iter(value))
        key, value = f"{key}.{first}", value[first]
    return key


def _is_number(text: str) -> bool:
    """Whether ``float(text)`` reads ``text`` (a string that is no number falls through to the next type)."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check ``value`` against a simple type hint, converting ints to floats and numbers to str."""
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        item = typing.get_args(hint)[0]
        return tuple(_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value))
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None:
        if type(None) in options:
            return None
        raise ConfigError(f"{key}: may not be null")
    for option in options:
        if option is bool and isinstance(value, bool):
            return value
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if option is float and isinstance(value, str) and _is_number(value):  # YAML 1.1 reads "1e-3" as a string
            return float(value)
        if option is str and isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    names = " or ".join(getattr(o, "__name__", str(o)) for o in options)
    raise ConfigError(f"{key}: expected {names}, got {value!r}")
