"""Box -> mask backends: the filled box exactly, GrabCut on a synthetic disc, SAM equal to FrozenSam.decode; per-frame
segmentors as streams; the folder segmentors' refusals."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from groprompt.config import ModelConfig
from groprompt.errors import ConfigError
from groprompt.evaluation.metrics import region_similarity
from groprompt.models.sam import FrozenSam
from groprompt.models.sam_hq import SamHQSegmentor
from groprompt.models.segmentors import (
    BoxSegmentor,
    FrameStream,
    GrabCutSegmentor,
    box_mask,
    build_segmentor,
    check_segmentor,
    check_segmentor_weights,
    open_stream,
    step_sets,
)

SIZE = (160, 200)
CENTRE, RADIUS = (90, 110), 35  # (row, col)


@pytest.fixture(scope="module")
def disc_scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A red disc on a green-grey textured background; its mask; a box around it with some slack."""
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[: SIZE[0], : SIZE[1]]
    stripes = (40 * np.sin(cols / 5.0) + 30 * np.cos(rows / 7.0))[..., None]
    frame = np.array([70, 120, 80]) + stripes + rng.normal(0, 12, (*SIZE, 3))
    disc = (rows - CENTRE[0]) ** 2 + (cols - CENTRE[1]) ** 2 <= RADIUS**2
    frame[disc] = np.array([200, 40, 50]) + rng.normal(0, 12, (int(disc.sum()), 3))
    slack = 6
    box = np.array(
        [[CENTRE[1] - RADIUS - slack, CENTRE[0] - RADIUS - slack, CENTRE[1] + RADIUS + slack + 1, CENTRE[0] + RADIUS + slack + 1]],
        dtype=np.float64,
    )
    return frame.clip(0, 255).astype(np.uint8), disc, box


def test_box_segmentor_fills_pixel_centres_inside_the_box() -> None:
    segmentor = build_segmentor("box")
    assert not segmentor.needs_frame and not segmentor.needs_embedding
    boxes = np.array([[2, 3, 7, 9], [2.4, 3.6, 7.5, 9.2], [-5, -5, 3, 3], [5, 5, 5, 5], [8, 2, 4, 6], [30, 30, 40, 40]])
    masks = segmentor.segment(None, boxes, size=(10, 12))
    expected = np.zeros((6, 10, 12), dtype=bool)
    expected[0, 3:9, 2:7] = True
    expected[1, 4:9, 2:7] = True
    expected[2, 0:3, 0:3] = True  # clipped to the frame; the last three are degenerate or off-frame
    assert masks.dtype == bool and np.array_equal(masks, expected)


def test_box_segmentor_takes_the_size_from_the_frame_and_accepts_no_boxes() -> None:
    frame = np.zeros((10, 12, 3), np.uint8)
    segmentor = build_segmentor("box")
    assert segmentor.segment(frame, np.zeros((0, 4))).shape == (0, 10, 12)
    with pytest.raises(ValueError, match="differs"):
        segmentor.segment(frame, np.zeros((0, 4)), size=(11, 12))
    with pytest.raises(ValueError, match="size"):
        segmentor.segment(None, np.zeros((1, 4)))
    for bad in (np.zeros(4), np.zeros((1, 5)), np.array([[0, 0, np.nan, 4]])):
        with pytest.raises(ValueError, match="xyxy"):
            segmentor.segment(frame, bad)


@pytest.mark.parametrize("options", [{}, {"crop_margin": None, "max_side": None}, {"crop_margin": 0.5, "max_side": 64}])
def test_grabcut_finds_the_disc_and_beats_the_box(disc_scene, options) -> None:
    frame, disc, box = disc_scene
    segmentor = build_segmentor("grabcut", **options)
    assert segmentor.needs_frame and not segmentor.needs_embedding
    mask = segmentor.segment(frame, box)[0]
    grabcut_j = region_similarity(disc, mask)
    box_j = region_similarity(disc, build_segmentor("box").segment(frame, box)[0])
    assert grabcut_j > 0.8 and grabcut_j > box_j + 0.1, (grabcut_j, box_j)
    assert np.array_equal(mask, segmentor.segment(frame, box)[0])  # reseeded: repeatable


def test_grabcut_degenerate_boxes(disc_scene) -> None:
    frame, _, _ = disc_scene
    height, width = SIZE
    boxes = np.array(
        [
            [50, 50, 53, 53],  # too small for the colour models: the filled box
            [0, 0, width, height],  # no background left: the filled box
            [-40, -30, 60, 50],  # partly outside: clipped
            [70, 70, 70, 90],  # zero width: empty
            [300, 300, 400, 400],  # off the frame: empty
        ],
        dtype=np.float64,
    )
    for options in ({"crop_margin": None}, {"crop_margin": 0.5}):
        masks = GrabCutSegmentor(iterations=2, **options).segment(frame, boxes)
        filled = np.stack([box_mask(box, SIZE) for box in boxes])
        assert masks.shape == (5, *SIZE)
        assert np.array_equal(masks[:2], filled[:2])
        assert masks[2].any() and not (masks[2] & ~filled[2]).any()
        assert not masks[3:].any()


def test_grabcut_on_a_flat_frame_stays_in_the_box() -> None:
    frame = np.full((64, 80, 3), 128, np.uint8)
    box = np.array([[20, 10, 60, 50]], dtype=np.float64)
    mask = build_segmentor("grabcut").segment(frame, box)[0]
    assert mask.any() and not (mask & ~box_mask(box[0], (64, 80))).any()


def test_grabcut_needs_the_frame_and_checks_options() -> None:
    with pytest.raises(ValueError, match="frame"):
        build_segmentor("grabcut").segment(None, np.zeros((1, 4)), size=(10, 10))
    for options in ({"iterations": 0}, {"crop_margin": -1.0}, {"max_side": 4}):
        with pytest.raises(ValueError):
            build_segmentor("grabcut", **options)


def test_sam_segmentor_equals_frozen_sam_decode() -> None:
    sam = FrozenSam.from_name("tiny", seed=0)
    frame = np.random.default_rng(1).integers(0, 256, (120, 90, 3), dtype=np.uint8)
    embedding = sam.encode([frame])[0]
    boxes = np.array([[10, 20, 60, 100], [0, 0, 90, 120], [30.5, 40.25, 50.0, 70.75]])
    segmentor = build_segmentor("sam", sam=sam, multimask=True)
    assert segmentor.needs_embedding and not segmentor.needs_frame
    expected, _ = sam.decode(embedding, boxes, (120, 90), multimask=True)
    masks = segmentor.segment(None, boxes, embedding, size=(120, 90))
    assert masks.dtype == bool and masks.shape == (3, 120, 90)
    assert np.array_equal(masks, expected.numpy())
    assert np.array_equal(segmentor.segment(frame, boxes, embedding), masks)
    with pytest.raises(ValueError, match="embedding"):
        segmentor.segment(frame, boxes)


def test_build_segmentor_errors() -> None:
    with pytest.raises(ValueError, match="FrozenSam"):
        build_segmentor("sam")
    with pytest.raises(ValueError, match="unknown segmentor"):
        build_segmentor("dino")


def test_a_per_frame_segmentor_streams_each_distinct_box_once_and_nan_boxes_empty() -> None:
    calls: list[np.ndarray] = []

    class Counting(BoxSegmentor):
        def segment(
            self, frame: np.ndarray | None, boxes: np.ndarray, embedding: torch.Tensor | None = None, size: tuple[int, int] | None = None
        ) -> np.ndarray:
            calls.append(np.array(boxes))
            return super().segment(frame, boxes, embedding, size)

    stream = open_stream(Counting(), 3)
    assert isinstance(stream, FrameStream) and not stream.stateful
    boxes = np.array([[2, 3, 7, 9], [np.nan] * 4, [2, 3, 7, 9]])
    masks = stream.step(None, boxes, np.array([0.9, 0.1, 0.2]), size=(10, 12))
    assert [len(c) for c in calls] == [1]  # one distinct finite box
    np.testing.assert_array_equal(masks, np.stack([box_mask(boxes[0], (10, 12)), np.zeros((10, 12), bool), box_mask(boxes[0], (10, 12))]))
    assert not stream.step(None, np.full((3, 4), np.nan), np.zeros(3), size=(10, 12)).any() and len(calls) == 1


@pytest.mark.usefixtures("one_torch_thread")
def test_folder_segmentors_refuse_a_missing_mismatched_or_weightless_folder(sam_hq_folder: Path, sam2_folder: Path, tmp_path: Path) -> None:
    def config(folder: Path | None, **keys: object) -> ModelConfig:
        return ModelConfig(segmentor_weights=None if folder is None else str(folder), **keys)

    with pytest.raises(ConfigError, match="model.segmentor_weights: segmentor sam2 needs a local save_pretrained folder"):
        check_segmentor_weights("sam2", config(None))
    with pytest.raises(ConfigError, match=f"{re.escape(str(tmp_path / 'missing'))}: segmentor sam-hq weights folder not found"):
        check_segmentor_weights("sam-hq", config(tmp_path / "missing"))
    with pytest.raises(
        ConfigError, match=f"{re.escape(str(sam2_folder))}: holds a 'sam2_video' model, segmentor sam-hq needs a 'sam_hq' model"
    ):
        build_segmentor("sam-hq", config=config(sam2_folder))
    check_segmentor_weights("grabcut", config(tmp_path / "missing"))  # weight-free: no folder read

    weightless = tmp_path / "weightless"
    shutil.copytree(sam_hq_folder, weightless, ignore=shutil.ignore_patterns("model.safetensors"))
    check_segmentor_weights("sam-hq", config(weightless))  # the folder is right; its weights are looked for on load
    with pytest.raises(ConfigError, match=f"{re.escape(str(weightless))}: no weights .* model.allow_random_weights=true"):
        build_segmentor("sam-hq", config=config(weightless))
    random = build_segmentor("sam-hq", config=config(weightless, allow_random_weights=True, segmentor_dtype="bfloat16"))
    assert isinstance(random, SamHQSegmentor) and random.model.dtype == torch.bfloat16

    unfit = tmp_path / "unfit"
    shutil.copytree(sam_hq_folder, unfit)
    layout = json.loads((unfit / "config.json").read_text())
    layout["mask_decoder_config"]["iou_head_hidden_dim"] *= 2
    (unfit / "config.json").write_text(json.dumps(layout))
    with pytest.raises(ConfigError, match=f"{re.escape(str(unfit))}: cannot load segmentor sam-hq"):
        build_segmentor("sam-hq", config=config(unfit))


def test_a_set_of_boxes_per_object_gives_the_union_of_their_masks() -> None:
    stream = open_stream(build_segmentor("box"), 2)
    nan = [np.nan] * 4
    boxes = np.array([[[0, 0, 4, 4], [6, 6, 8, 10]], [nan, nan]], dtype=np.float64)  # object 0: two boxes; object 1: none
    masks = step_sets(stream, np.zeros((10, 10, 3), np.uint8), boxes, np.array([[0.9, 0.7], [0.0, 0.0]]))
    expected = np.zeros((2, 10, 10), bool)
    expected[0, 0:4, 0:4] = True
    expected[0, 6:10, 6:8] = True
    np.testing.assert_array_equal(masks, expected)
    one = step_sets(stream, np.zeros((10, 10, 3), np.uint8), boxes[:, :1], np.ones((2, 1)))  # one box each: the plain step
    np.testing.assert_array_equal(one, stream.step(np.zeros((10, 10, 3), np.uint8), boxes[:, 0], np.ones(2)))


def test_sam2_refuses_the_set_mode_before_any_worker_starts() -> None:
    with pytest.raises(ConfigError, match="model.multi_object: the set mode gives several boxes"):
        check_segmentor("sam2", ModelConfig(multi_object=True))
    check_segmentor("box", ModelConfig(multi_object=True))  # a per-frame segmentor takes sets
