"""RefShapesSpec: impossible specs are refused."""

from __future__ import annotations

import pytest

from groprompt.data.refshapes.spec import RefShapesSpec


@pytest.mark.parametrize(
    "fields",
    [
        {"videos": 0},
        {"frames": 1},
        {"size": 32},
        {"min_objects": 1},
        {"min_objects": 4, "max_objects": 3},
        {"multi_object_share": -0.1},
        {"leaves_frame_share": 1.5},
    ],
)
def test_spec_rejects_impossible_values(fields: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RefShapesSpec(**fields)
