"""One video in memory: frames and id maps of the declared shape, the same from the same spec and index."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from groprompt.data.refshapes.spec import RefShapesSpec
from groprompt.data.refshapes.video import SyntheticVideo, make_video


def test_frames_and_id_maps_have_the_declared_shape(spec: RefShapesSpec, videos: list[SyntheticVideo]) -> None:
    for video in videos:
        n = len(video.objects)
        assert spec.min_objects <= n <= spec.max_objects
        assert video.frames.shape == (spec.frames, spec.size, spec.size, 3) and video.frames.dtype == np.uint8
        assert video.ids.shape == (spec.frames, spec.size, spec.size)
        assert [obj.obj_id for obj in video.objects] == list(range(1, n + 1))
        assert set(np.unique(video.ids)) <= set(range(n + 1))
        assert set(np.unique(video.ids[0])) == set(range(n + 1)), "every object is visible in the first frame"
        assert video.frame_names[:2] == ("00000", "00001")


def test_same_spec_gives_the_same_video_and_another_seed_does_not(small_spec: RefShapesSpec) -> None:
    a, b = make_video(small_spec, 2), make_video(small_spec, 2)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.ids, b.ids) and a.expressions == b.expressions
    c = make_video(replace(small_spec, seed=2), 2)
    assert not np.array_equal(a.frames, c.frames)
