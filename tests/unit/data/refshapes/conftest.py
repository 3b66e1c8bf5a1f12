"""Shared RefShapes fixtures: the specs the tests generate from, and one set of videos made once per session."""

from __future__ import annotations

import pytest

from groprompt.data.refshapes.spec import RefShapesSpec
from groprompt.data.refshapes.video import SyntheticVideo, make_video


@pytest.fixture(scope="session")
def spec() -> RefShapesSpec:
    """Enough full-size videos for every type of expression, overlap and exit to occur (the two newer types on)."""
    return RefShapesSpec(videos=12, frames=12, size=256, seed=4, multi_object_share=0.5, leaves_frame_share=0.5)


@pytest.fixture(scope="session")
def small_spec() -> RefShapesSpec:
    """A few small, short videos: quick to write to disk."""
    return RefShapesSpec(videos=4, frames=5, size=128, seed=1, multi_object_share=0.5, leaves_frame_share=0.5)


@pytest.fixture(scope="session")
def videos(spec: RefShapesSpec) -> list[SyntheticVideo]:
    """Every video of ``spec``, in memory."""
    return [make_video(spec, index) for index in range(spec.videos)]
