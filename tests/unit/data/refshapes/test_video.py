"""One video in memory: frames and id maps of the declared shape, the same from the same spec and index; the spec's shares
choose the videos that get a multi-object and a leaves-frame expression."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from groprompt.data.refshapes.spec import RefShapesSpec
from groprompt.data.refshapes.video import SyntheticVideo, make_video
from tests.unit.data.refshapes.pixels import touches_border


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
    assert a.groups == b.groups
    c = make_video(replace(small_spec, seed=2), 2)
    assert not np.array_equal(a.frames, c.frames)


def test_shares_choose_the_videos_that_get_multi_object_and_leaves_frame_expressions() -> None:
    base = RefShapesSpec(videos=8, frames=4, size=96, seed=7, multi_object_share=0.0, leaves_frame_share=0.0)
    plain = [make_video(base, index) for index in range(base.videos)]
    assert all(
        not video.groups and {e.kind for e in video.expressions} <= {"appearance", "position", "motion", "appearance+motion"}
        for video in plain
    )
    # A multi-object expression is added to its video, nothing else changes; a video of two objects can have none
    # (two or more objects but not all), one of more objects always can: the lookalike pair ("the two red circles"),
    # as no third object has their look in these videos.
    for before, after in zip(plain, (make_video(replace(base, multi_object_share=1.0), index) for index in range(base.videos))):
        assert np.array_equal(before.frames, after.frames) and after.expressions[: len(before.expressions)] == before.expressions
        added = after.expressions[len(before.expressions) :]
        looks = [obj.look for obj in before.objects]
        assert max(map(looks.count, looks)) == 2
        expected = len(looks) > 2
        assert [e.kind for e in added] == ["multi-object"] * expected
        assert list(after.groups) == [len(before.objects) + 1] * expected == [e.obj_id for e in added]
    # Every video sends an object out of the frame: in the last frame it has no pixel, having touched the border.
    for index in range(base.videos):
        video = make_video(replace(base, leaves_frame_share=1.0), index)
        masks = [video.ids == obj.obj_id for obj in video.objects]
        assert any(not mask[-1].any() and any(map(touches_border, mask)) for mask in masks), video.video_id
