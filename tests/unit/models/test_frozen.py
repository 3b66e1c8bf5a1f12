"""The frozen encoders: the text encoder loads on first use, on the device the encoders were moved to."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from groprompt.config import ModelConfig
from groprompt.models.frozen import build_frozen
from groprompt.models.text import FrozenTextEncoder


def test_the_text_encoder_loads_once_on_first_use_on_the_encoders_device(monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[Any] = []
    construct = FrozenTextEncoder.__init__

    def counted(self: FrozenTextEncoder, *args: Any, **kwargs: Any) -> None:
        loads.append(args)
        construct(self, *args, **kwargs)

    monkeypatch.setattr(FrozenTextEncoder, "__init__", counted)
    frozen = build_frozen(ModelConfig(sam="tiny"))
    assert loads == []
    assert frozen.to(torch.device("meta")) is frozen
    assert frozen.sam.device.type == "meta"
    text = frozen.text
    assert len(loads) == 1 and text.device.type == "meta"
    assert frozen.text is text and len(loads) == 1


def test_a_loaded_text_encoder_moves_with_the_encoders() -> None:
    frozen = build_frozen(ModelConfig(sam="tiny"))
    assert frozen.text.device.type == "cpu"
    frozen.to("meta")
    assert frozen.text.device.type == "meta" and frozen.sam.device.type == "meta"
