"""Held-out validation videos: names, a deterministic assignment by video id, and selection of Video records."""

from __future__ import annotations

import pytest

from groprompt.data.records import Video
from groprompt.data.splits import SplitPart, is_held_out, may_share_videos, parse_split, select_part
from groprompt.errors import DataError

IDS = [f"v{i:03d}" for i in range(40)]
# Computed apart from the module (the first 16 hex digits of sha256(id) against the share of 16**16):
HELD_OUT_10 = ["v006", "v007", "v018"]
HELD_OUT_20 = ["v000", "v005", "v006", "v007", "v018", "v027"]


def video(video_id: str, split: str = "train") -> Video:
    return Video(dataset="test", split=split, video_id=video_id, frame_names=("00000",), height=0, width=0, expressions=())


@pytest.mark.parametrize(
    "name, expected",
    [
        ("train", SplitPart("train", "train")),
        ("train-fit", SplitPart("train-fit", "train", "fit", 10)),
        ("train-holdout", SplitPart("train-holdout", "train", "holdout", 10)),
        ("train-fit-20pct", SplitPart("train-fit-20pct", "train", "fit", 20)),
        ("my-train-holdout-5pct", SplitPart("my-train-holdout-5pct", "my-train", "holdout", 5)),
        ("valid", SplitPart("valid", "valid")),
        ("train-holdout-20", SplitPart("train-holdout-20", "train-holdout-20")),  # no "pct": not a derived name
    ],
)
def test_split_names(name: str, expected: SplitPart) -> None:
    assert parse_split(name) == expected


@pytest.mark.parametrize("name", ["train-holdout-0pct", "train-fit-100pct"])
def test_a_held_out_share_outside_1_to_99_percent_is_refused(name: str) -> None:
    with pytest.raises(DataError, match=name):
        parse_split(name)


def test_the_assignment_matches_values_computed_apart() -> None:
    assert [i for i in IDS if is_held_out(i)] == HELD_OUT_10
    assert [i for i in IDS if is_held_out(i, 20)] == HELD_OUT_20


def test_fit_and_holdout_are_disjoint_cover_the_split_and_do_not_depend_on_order() -> None:
    videos = [video(i) for i in IDS]
    fit = [v.video_id for v in select_part(videos, parse_split("train-fit"))]
    holdout = [v.video_id for v in select_part(videos, parse_split("train-holdout"))]
    assert holdout == HELD_OUT_10
    assert not set(fit) & set(holdout) and sorted(fit + holdout) == IDS
    reversed_holdout = [v.video_id for v in select_part(reversed(videos), parse_split("train-holdout"))]
    assert reversed_holdout == HELD_OUT_10[::-1]


def test_adding_videos_moves_no_other_video() -> None:
    holdout = parse_split("train-holdout")
    before = [v.video_id for v in select_part(map(video, IDS), holdout)]
    after = [v.video_id for v in select_part(map(video, [f"new{i}" for i in range(200)] + IDS), holdout)]
    assert [i for i in after if i in IDS] == before
    assert len(after) > len(before)  # some new videos are held out too


def test_the_share_is_roughly_respected_and_nested() -> None:
    ids = [f"vid{i:04d}" for i in range(600)]
    held_10 = {i for i in ids if is_held_out(i, 10)}
    held_30 = {i for i in ids if is_held_out(i, 30)}
    assert 35 <= len(held_10) <= 85  # 60 expected: over 3 standard deviations either side
    assert 140 <= len(held_30) <= 220  # 180 expected
    assert held_10 <= held_30


def test_selected_videos_carry_the_part_name() -> None:
    (kept,) = select_part([video("v006")], parse_split("train-holdout"))
    assert kept.split == "train-holdout" and kept.video_id == "v006"
    assert list(select_part([video("v006")], parse_split("train-fit"))) == []


@pytest.mark.parametrize(
    "first, second, shared",
    [
        ("train-fit", "train-holdout", False),
        ("train-fit-20pct", "train-holdout-20pct", False),
        ("train", "valid", False),
        ("train", "train-holdout", True),
        ("train-fit", "train-holdout-20pct", True),  # cut at other shares
        ("train-fit", "train-fit", True),
        ("train-holdout", "train-holdout", True),
    ],
)
def test_which_splits_may_share_videos(first: str, second: str, shared: bool) -> None:
    assert may_share_videos(parse_split(first), parse_split(second)) is shared
    assert may_share_videos(parse_split(second), parse_split(first)) is shared
