"""Ref-DAVIS17 reader on the real shared data: the full annotation file and ref-davis-mini (frames + masks)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from PIL import Image

from groprompt.data.formats import dataset_summary, read_videos
from groprompt.data.formats.common import ImageFolderFrames, IndexPngMasks


@pytest.fixture(scope="module")
def mini_videos(shared_data):
    return list(read_videos("ref-davis17", shared_data / "ref-davis-mini"))


def test_counts_of_the_full_annotation_file(shared_data):
    meta = shared_data / "annotations" / "ref-davis17_valid_meta_expressions.json"
    assert dataset_summary("ref-davis17", meta) == {"videos": 30, "expressions": 244, "frames": 0}
    videos = list(read_videos("ref-davis17", meta))
    assert all(video.frames is None and video.masks is None and video.height == 0 for video in videos)
    assert all(e.obj_id is not None and e.obj_id >= 1 for video in videos for e in video.expressions)
    dogs = next(video for video in videos if video.video_id == "dogs-jump")
    assert dogs.object_ids == (1, 2, 3) and len(dogs.frame_names) == 66
    assert set(dogs.boxes) == {1, 2, 3}  # no masks on disk: every frame unannotated
    assert all(box is None for boxes in dogs.boxes.values() for box in boxes)


def test_counts_of_ref_davis_mini(shared_data):
    root = shared_data / "ref-davis-mini"
    assert dataset_summary("ref-davis17", root) == {"videos": 8, "expressions": 32, "frames": 537}
    assert dataset_summary("ref-davis17", root, "valid") == dataset_summary("ref-davis17", root)


def test_mini_records(mini_videos, shared_data):
    assert [v.video_id for v in mini_videos][:2] == ["blackswan", "breakdance"]
    for video in mini_videos:
        assert (video.dataset, video.split, video.height, video.width) == ("ref-davis17", "valid", 480, 854)
        assert len(video.expressions) == 4 and video.object_ids == (1,)
        assert isinstance(video.frames, ImageFolderFrames) and isinstance(video.masks, IndexPngMasks)
        assert video.frames.available() == len(video.frame_names)
        assert len(video.boxes[1]) == len(video.frame_names)
    frame = mini_videos[0].frames.read(0)
    assert frame.shape == (480, 854, 3) and frame.dtype == np.uint8
    expected = np.asarray(Image.open(shared_data / "ref-davis-mini/valid/JPEGImages/blackswan/00000.jpg").convert("RGB"))
    np.testing.assert_array_equal(frame, expected)


@pytest.mark.parametrize("video_id,index", [("blackswan", 0), ("breakdance", 41), ("cows", 103), ("parkour", 57), ("libby", 48)])
def test_boxes_are_the_tight_boxes_of_the_masks(mini_videos, shared_data, video_id, index):
    video = next(v for v in mini_videos if v.video_id == video_id)
    png = shared_data / "ref-davis-mini/valid/Annotations" / video_id / f"{video.frame_names[index]}.png"
    rows, cols = np.nonzero(np.asarray(Image.open(png)) == 1)
    expected = (float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1))
    assert video.boxes[1][index] == expected
    assert np.array_equal(video.masks.read(index) == 1, np.asarray(Image.open(png)) == 1)


def test_without_boxes_and_pickling(shared_data, mini_videos):
    videos = list(read_videos("ref-davis17", shared_data / "ref-davis-mini", with_boxes=False))
    assert len(videos) == 8 and all(video.boxes == {} for video in videos)
    clone = pickle.loads(pickle.dumps(mini_videos[3]))
    assert clone == mini_videos[3]
    np.testing.assert_array_equal(clone.masks.read(5), mini_videos[3].masks.read(5))
