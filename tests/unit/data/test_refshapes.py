"""RefShapes generator: geometry, expressions re-checked independently from the pixels, layout, determinism."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from groprompt.cli import main
from groprompt.data.records import DataError
from groprompt.data.refshapes import (
    COLOURS,
    KINDS,
    SHAPES,
    SIZES,
    SPEC_FILE,
    RefShapesSpec,
    ShapeObject,
    SyntheticVideo,
    make_video,
    write_refshapes,
)
from groprompt.outputs import read_index_png

SPEC = RefShapesSpec(videos=12, frames=12, size=256, seed=3)
SMALL = RefShapesSpec(videos=4, frames=5, size=128, seed=1)
MOTION_WORDS = {"left": "left", "right": "right", "up": "up", "upwards": "up", "down": "down", "downwards": "down"}
POSITION_WORDS = {
    "left": "left", "leftmost": "left", "right": "right", "rightmost": "right",
    "top": "top", "highest": "top", "bottom": "bottom", "lowest": "bottom",
}


@pytest.fixture(scope="module")
def videos() -> list[SyntheticVideo]:
    return [make_video(SPEC, index) for index in range(SPEC.videos)]


def centroid(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()])


def stands_apart(ids: np.ndarray, obj_id: int) -> bool:
    """Whether an object is wholly in view: present, off the border, and touching no other object."""
    mask = ids == obj_id
    if not mask.any() or mask[[0, -1]].any() or mask[:, [0, -1]].any():
        return False
    ring = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~mask
    return not ids[ring].any()


def measured_motion(video: SyntheticVideo, obj: ShapeObject) -> str:
    """The motion seen in the masks: a line fitted to centroids of the frames where the object is wholly in view."""
    whole = [t for t, ids in enumerate(video.ids) if stands_apart(ids, obj.obj_id)]
    assert len(whole) >= 2, f"{video.video_id}/{obj.obj_id}: fewer than two frames wholly in view"
    points = np.array([centroid(video.ids[t] == obj.obj_id) for t in whole])
    vx, vy = (np.polyfit(whole, points[:, axis], 1)[0] for axis in (0, 1))
    if math.hypot(vx, vy) < SPEC.size / 256:
        return "still"
    if abs(vx) > abs(vy):
        return "right" if vx > 0 else "left"
    return "down" if vy > 0 else "up"


def measured_colour(video: SyntheticVideo, obj: ShapeObject) -> str:
    pixels = video.frames[0][video.ids[0] == obj.obj_id]
    median = np.median(pixels, axis=0)
    return min(COLOURS, key=lambda name: np.linalg.norm(median - np.asarray(COLOURS[name])))


def inside_shape(obj: ShapeObject, t: int, xs: np.ndarray, ys: np.ndarray, tolerance: float = 1.5) -> np.ndarray:
    """Whether pixels lie inside the object's shape (circumradius r), give or take the rasteriser's edge pixels."""
    cx, cy = obj.centre(t)
    dx, dy, r = xs - cx, ys - cy, obj.radius
    inside = np.hypot(dx, dy) <= r + tolerance
    if obj.shape == "square":
        inside &= np.maximum(abs(dx), abs(dy)) <= 0.7 * r + tolerance
    elif obj.shape == "cross":
        inside &= np.minimum(abs(dx), abs(dy)) <= 0.34 * r + tolerance
    elif obj.shape in ("triangle", "diamond"):
        corners = 3 if obj.shape == "triangle" else 4
        for k in range(corners):
            normal = -math.pi / 2 + math.pi / corners + 2 * math.pi * k / corners
            inside &= dx * math.cos(normal) + dy * math.sin(normal) <= r * math.cos(math.pi / corners) + tolerance
    return inside


def parse(text: str) -> dict[str, str | None]:
    """What a sentence names: a position ("on the left", "the highest ...") or else a motion, and a look."""
    words = text.split()
    pick = lambda vocabulary: next((w for w in words if w in vocabulary), None)  # noqa: E731
    placed = " on the " in text or " at the " in text or bool({"leftmost", "rightmost", "highest", "lowest"} & set(words))
    still = "still" in words or "not" in words
    return {
        "shape": pick(SHAPES),
        "colour": pick(COLOURS),
        "size": pick(SIZES),
        "motion": None if placed else "still" if still else MOTION_WORDS.get(pick(MOTION_WORDS) or ""),
        "position": POSITION_WORDS.get(pick(POSITION_WORDS) or "") if placed else None,
    }


def test_frames_and_id_maps_have_the_declared_shape(videos: list[SyntheticVideo]) -> None:
    for video in videos:
        n = len(video.objects)
        assert SPEC.min_objects <= n <= SPEC.max_objects
        assert video.frames.shape == (SPEC.frames, SPEC.size, SPEC.size, 3) and video.frames.dtype == np.uint8
        assert video.ids.shape == (SPEC.frames, SPEC.size, SPEC.size)
        assert [obj.obj_id for obj in video.objects] == list(range(1, n + 1))
        assert set(np.unique(video.ids)) <= set(range(n + 1))
        assert set(np.unique(video.ids[0])) == set(range(n + 1)), "every object is visible in the first frame"
        assert video.frame_names[:2] == ("00000", "00001")


def test_masks_lie_inside_the_drawn_shapes_in_their_colour(videos: list[SyntheticVideo]) -> None:
    for video in videos:
        for obj in video.objects:
            for t in range(SPEC.frames):
                ys, xs = np.nonzero(video.ids[t] == obj.obj_id)
                assert inside_shape(obj, t, xs, ys).all(), f"{video.video_id}/{obj.obj_id}/{t}"
            assert measured_colour(video, obj) == obj.colour


def test_later_objects_occlude_earlier_ones_and_overlaps_occur(videos: list[SyntheticVideo]) -> None:
    ys, xs = np.mgrid[0 : SPEC.size, 0 : SPEC.size]
    overlaps = 0
    for video in videos:
        for obj in video.objects:
            for t in range(SPEC.frames):
                core = np.hypot(xs - obj.centre(t)[0], ys - obj.centre(t)[1]) <= 0.3 * obj.radius
                covering = set(np.unique(video.ids[t][core])) - {0, obj.obj_id}
                assert all(other > obj.obj_id for other in covering), "only later objects may cover an object"
                overlaps += bool(covering)
    assert overlaps > 0


def test_objects_sometimes_leave_the_frame(videos: list[SyntheticVideo]) -> None:
    absent = 0
    for video in videos:
        for obj in video.objects:
            for t in range(SPEC.frames):
                outline = obj.outline(t)
                if (outline.max(axis=0) < -1).any() or (outline.min(axis=0) > SPEC.size).any():
                    assert not (video.ids[t] == obj.obj_id).any()
                    absent += 1
    assert absent > 0


def test_motion_labels_match_the_masks(videos: list[SyntheticVideo]) -> None:
    for video in videos:
        for obj in video.objects:
            assert measured_motion(video, obj) == obj.motion, f"{video.video_id}/{obj.obj_id}"


def test_every_video_has_a_lookalike_pair_that_differs_in_motion(videos: list[SyntheticVideo]) -> None:
    for video in videos:
        pairs = [
            (a, b)
            for a in video.objects
            for b in video.objects
            if a.obj_id < b.obj_id and a.look == b.look and measured_motion(video, a) != measured_motion(video, b)
        ]
        assert pairs, video.video_id


def test_every_object_has_two_expressions_and_all_types_occur(videos: list[SyntheticVideo]) -> None:
    for video in videos:
        for obj in video.objects:
            assert len([e for e in video.expressions if e.obj_id == obj.obj_id]) >= 2
        assert [e.exp_id for e in video.expressions] == [str(i) for i in range(len(video.expressions))]
        assert len({e.text for e in video.expressions}) == len(video.expressions)
    assert {e.kind for video in videos for e in video.expressions} == set(KINDS)


def test_every_expression_is_true_and_unique_by_an_independent_check(videos: list[SyntheticVideo]) -> None:
    for video in videos:
        motion = {obj.obj_id: measured_motion(video, obj) for obj in video.objects}
        for expression in video.expressions:
            words = parse(expression.text)
            names_look = any(words[name] for name in ("shape", "colour", "size"))
            expected_kind = {
                (True, False, False): "appearance",
                (False, True, False): "motion",
                (True, True, False): "appearance+motion",
            }.get((names_look, words["motion"] is not None, words["position"] is not None), "position")
            assert expression.kind == expected_kind, expression
            candidates = [
                obj
                for obj in video.objects
                if all(words[name] in (None, getattr(obj, name)) for name in ("shape", "colour", "size"))
                and (words["motion"] is None or motion[obj.obj_id] == words["motion"])
            ]
            if words["position"] is None:
                assert [obj.obj_id for obj in candidates] == [expression.obj_id], expression
                continue
            assert len(candidates) >= 2, expression
            axis, sign = {"left": (0, 1), "right": (0, -1), "top": (1, 1), "bottom": (1, -1)}[words["position"]]
            keys = sorted((sign * centroid(video.ids[0] == obj.obj_id)[axis], obj.obj_id) for obj in candidates)
            assert keys[0][1] == expression.obj_id, expression
            assert keys[1][0] - keys[0][0] > 0.1 * SPEC.size, expression


def test_same_spec_gives_the_same_video_and_another_seed_does_not() -> None:
    a, b = make_video(SMALL, 2), make_video(SMALL, 2)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.ids, b.ids) and a.expressions == b.expressions
    c = make_video(RefShapesSpec(videos=4, frames=5, size=128, seed=2), 2)
    assert not np.array_equal(a.frames, c.frames)


@pytest.mark.parametrize(
    "fields", [{"videos": 0}, {"frames": 1}, {"size": 32}, {"min_objects": 1}, {"min_objects": 4, "max_objects": 3}]
)
def test_spec_rejects_impossible_values(fields: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        RefShapesSpec(**fields)


def file_hashes(root: Path) -> dict[str, str]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_written_layout_matches_ref_youtube_vos(tmp_path: Path) -> None:
    splits = write_refshapes(tmp_path, SMALL, valid_fraction=0.25, progress=False)
    assert len(splits["valid"]) == 1 and len(splits["train"]) == 3
    for split, video_ids in splits.items():
        meta = json.loads((tmp_path / "meta_expressions" / split / "meta_expressions.json").read_text())
        objects_meta = json.loads((tmp_path / split / "meta.json").read_text())["videos"]
        assert sorted(meta["videos"]) == sorted(video_ids) == sorted(objects_meta)
        for vid, entry in meta["videos"].items():
            video = make_video(SMALL, int(vid[2:]))
            assert entry["frames"] == [f"{t:05d}" for t in range(SMALL.frames)]
            assert sorted(objects_meta[vid]["objects"]) == [str(obj.obj_id) for obj in video.objects]
            for expression in entry["expressions"].values():
                assert set(expression) == {"exp", "obj_id", "type"} and expression["type"] in KINDS
                assert expression["obj_id"] in objects_meta[vid]["objects"]
            for t, name in enumerate(entry["frames"]):
                with Image.open(tmp_path / split / "JPEGImages" / vid / f"{name}.jpg") as image:
                    assert image.format == "JPEG" and image.size == (SMALL.size, SMALL.size)
                ids = read_index_png(tmp_path / split / "Annotations" / vid / f"{name}.png")
                assert np.array_equal(ids, video.ids[t])
    assert json.loads((tmp_path / SPEC_FILE).read_text())["spec"]["seed"] == SMALL.seed


def test_writing_is_deterministic_resumable_and_refuses_another_spec(tmp_path: Path) -> None:
    write_refshapes(tmp_path / "a", SMALL, progress=False)
    write_refshapes(tmp_path / "b", SMALL, progress=False)
    hashes = file_hashes(tmp_path / "a")
    assert hashes == file_hashes(tmp_path / "b")
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "a").rglob("*")}
    write_refshapes(tmp_path / "a", SMALL, progress=False)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "a").rglob("*")} == mtimes, "a complete output is left alone"
    with pytest.raises(DataError, match="seed"):
        write_refshapes(tmp_path / "a", RefShapesSpec(videos=4, frames=5, size=128, seed=9), progress=False)
    # An interrupted run: no spec file and no expressions yet. It is redone, byte for byte.
    (tmp_path / "a" / SPEC_FILE).unlink()
    (tmp_path / "a" / "meta_expressions" / "train" / "meta_expressions.json").unlink()
    write_refshapes(tmp_path / "a", SMALL, progress=False)
    assert file_hashes(tmp_path / "a") == hashes


def test_cli_makes_refshapes(tmp_path: Path) -> None:
    args = ["make-refshapes", "--out", str(tmp_path), "--videos", "3", "--frames", "4", "--size", "96", "--seed", "5"]
    assert main(args) == 0
    meta = json.loads((tmp_path / "meta_expressions" / "train" / "meta_expressions.json").read_text())
    assert len(meta["videos"]) == 2 and (tmp_path / "valid" / "JPEGImages").is_dir()
    assert main(args) == 0
    assert main(args[:-1] + ["6"]) == 2
