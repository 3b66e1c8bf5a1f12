"""A frozen ``transformers`` model and its processor from a local ``save_pretrained`` folder; nothing is downloaded.

The folder holds ``config.json``, the weights (``model.safetensors`` or ``pytorch_model.bin``, maybe sharded) and the
processor's files. A missing folder, another model's folder, or weights that do not fit its configuration is a
``ConfigError`` naming the folder (the stage prints one line). A folder without weights builds random weights from
its configuration only when ``allow_random`` says so (speed measurements).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from groprompt.errors import ConfigError

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
WEIGHTS_KEY = "model.segmentor_weights"


def folder_model_type(folder: str | Path | None, segmentor: str, model_type: str) -> Path:
    """The folder, checked to hold a ``model_type`` configuration for ``segmentor`` (without loading anything)."""
    if folder is None:
        raise ConfigError(f"{WEIGHTS_KEY}: segmentor {segmentor} needs a local save_pretrained folder of a {model_type!r} model")
    path = Path(folder)
    if not path.is_dir():
        raise ConfigError(f"{path}: segmentor {segmentor} weights folder not found ({WEIGHTS_KEY})")
    try:
        found = json.loads((path / "config.json").read_text()).get("model_type")
    except (OSError, ValueError) as error:
        raise ConfigError(f"{path}: no readable config.json (segmentor {segmentor} loads a save_pretrained folder)") from error
    if found != model_type:
        raise ConfigError(f"{path}: holds a {found!r} model, segmentor {segmentor} needs a {model_type!r} model")
    return path


def has_weights(folder: Path) -> bool:
    """Whether a ``save_pretrained`` folder holds weights."""
    return any((folder / name).is_file() for name in WEIGHT_FILES)


def load_frozen(
    folder: str | Path | None,
    segmentor: str,
    model_type: str,
    model_class: Any,
    processor_class: Any,
    dtype: str = "float32",
    allow_random: bool = False,
) -> tuple[Any, Any]:
    """(model in eval mode without gradients, processor) of a ``model_type`` folder, in ``dtype``."""
    path = folder_model_type(folder, segmentor, model_type)
    weighted = has_weights(path)
    if not weighted and not allow_random:
        raise ConfigError(
            f"{path}: no weights ({' or '.join(WEIGHT_FILES[::2])}); its masks would mean nothing: save them with "
            "save_pretrained, or set model.allow_random_weights=true (speed measurements only)"
        )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch_dtype = getattr(torch, dtype)
    try:
        processor = processor_class.from_pretrained(path, local_files_only=True)
        if weighted:
            model, info = model_class.from_pretrained(path, local_files_only=True, dtype=torch_dtype, output_loading_info=True)
        else:
            model, info = model_class(model_class.config_class.from_pretrained(path)).to(torch_dtype), {}
    except (OSError, ValueError, RuntimeError, TypeError) as error:  # no processor files; weights of other shapes
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConfigError(f"{path}: cannot load segmentor {segmentor} with its processor ({reason})") from error
    unfit = [*info.get("missing_keys", ()), *(str(key) for key in info.get("mismatched_keys", ()))]
    if unfit:
        raise ConfigError(f"{path}: weights do not fit config.json ({len(unfit)} missing or of another shape, e.g. {unfit[0]})")
    return model.eval().requires_grad_(False), processor
