"""A Ray Tune trial's session trains on a GPU only when ``train.use_gpu`` asks for one and the trial sees one."""

from __future__ import annotations

import pytest
import torch

from groprompt.stages.sessions import RaySession


@pytest.mark.parametrize(
    ("use_gpu", "visible", "expected"),
    [(False, False, "cpu"), (False, True, "cpu"), (True, False, "cpu"), (True, True, "cuda")],
)
def test_a_trial_session_device(monkeypatch: pytest.MonkeyPatch, use_gpu: bool, visible: bool, expected: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: visible)
    assert RaySession(distributed=False, use_gpu=use_gpu).device == torch.device(expected)
