"""Torch files of tensors and plain data (checkpoints, state dicts), read safely from a path or a bucket."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from groprompt.errors import CheckpointError
from groprompt.files import Location, location, readable


def read_file(path: str | Path | Location) -> Any:
    """Tensors and plain data from a torch file (``weights_only``), local or in object storage; errors name the file."""
    path = location(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        return torch.load(readable(path), map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many types for a file it cannot read
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint of tensors and plain data ({reason})") from error
