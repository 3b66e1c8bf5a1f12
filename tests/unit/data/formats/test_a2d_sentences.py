"""A2D-Sentences reader: the real annotation file, and a tiny dataset (mp4 + MATLAB-style .h5) written here."""

from __future__ import annotations

import hashlib
import pickle
import shutil
from pathlib import Path

import av
import h5py
import numpy as np
import pytest

from groprompt.data.formats import dataset_summary, read_videos
from groprompt.data.formats.a2d_sentences import H5InstanceMasks, Mp4Frames, read_instance_h5
from groprompt.errors import DataError
from tests.helpers import assert_same_videos, upload_tree

H, W, T = 48, 64, 6  # not square: a transposition mistake changes the shapes and the boxes


def grey(t: int) -> int:
    return 30 + 30 * t


def write_mp4(path: Path, n_frames: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.options = {"crf": "0"}
        for t in range(n_frames):
            frame = av.VideoFrame.from_ndarray(np.full((H, W, 3), grey(t), np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def rect(x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    mask = np.zeros((H, W), np.uint8)
    mask[y1:y2, x1:x2] = 1
    return mask


def write_h5(path: Path, instances: list[int], masks: list[np.ndarray], column: bool = False) -> None:
    """As MATLAB writes them: reMask (N, W, H), or (W, H) for one instance; instance ids as doubles."""
    path.parent.mkdir(parents=True, exist_ok=True)
    stored = np.stack([mask.T for mask in masks])
    with h5py.File(path, "w") as file:
        file["reMask"] = stored[0] if len(masks) == 1 else stored
        ids = np.asarray(instances, np.float64)
        file["instance"] = ids[:, None] if column else ids


ANNOTATION = """video_id,instance_id,query
vidTrain01,0,the man on the left
vidTrain01,2,"a dog, running"
vidTest001,0,a bird flying
vidTest001,1 (copy),a stray sentence
"""


@pytest.fixture
def a2d_root(tmp_path: Path) -> Path:
    (tmp_path / "text_annotations").mkdir()
    (tmp_path / "text_annotations" / "a2d_annotation.txt").write_text(ANNOTATION)
    (tmp_path / "Release").mkdir()
    (tmp_path / "Release" / "videoset.csv").write_text(
        "vidTrain01,11,0,4.5,240,320,6,2,0\nvidTest001,21,0,3.0,240,320,9,1,1\nvidUnused1,11,0,3,240,320,5,1,0\n"
    )
    write_mp4(tmp_path / "Release" / "clips320H" / "vidTrain01.mp4", T)
    masks = tmp_path / "text_annotations" / "a2d_annotation_with_instances"
    write_h5(masks / "vidTrain01" / "00002.h5", [0, 2], [rect(2, 3, 10, 40), rect(30, 5, 60, 12)], column=True)
    write_h5(masks / "vidTrain01" / "00005.h5", [2], [rect(40, 1, 41, 47)])
    write_h5(masks / "vidTest001" / "00004.h5", [0], [rect(0, 0, 64, 48)])
    return tmp_path


def test_counts_of_the_real_annotation_file(shared_data):
    path = shared_data / "annotations" / "a2d_annotation.txt"
    assert dataset_summary("a2d-sentences", path) == {"videos": 3754, "expressions": 6655, "frames": 0}
    videos = {video.video_id: video for video in read_videos("a2d-sentences", path)}
    assert all(video.split == "all" and video.frame_names == () for video in videos.values())
    first = videos["-0cOo0cRVZU"]
    assert [(e.exp_id, e.obj_id) for e in first.expressions[:3]] == [("0", 1), ("1", 2), ("2", 3)]
    assert first.expressions[0].text == "player in blue shirt passing a basketball on left"
    mistake = next(e for e in videos["T6bNPuKV-wY"].expressions if e.exp_id == "1 (copy)")
    assert mistake.obj_id is None and mistake.text == "bird standing in the beach"
    assert videos["T6bNPuKV-wY"].object_ids == (1, 2, 3, 4)
    with pytest.raises(DataError, match="needs Release/videoset.csv"):
        read_videos("a2d-sentences", path, "test")


def test_split_selection(a2d_root):
    test = list(read_videos("a2d-sentences", a2d_root))
    assert [(v.video_id, v.split) for v in test] == [("vidTest001", "test")]
    train = list(read_videos("a2d-sentences", a2d_root, "train", with_boxes=False))
    assert [(v.video_id, v.split) for v in train] == [("vidTrain01", "train")]
    assert dataset_summary("a2d-sentences", a2d_root, "train") == {"videos": 1, "expressions": 2, "frames": T}
    assert dataset_summary("a2d-sentences", a2d_root) == {"videos": 1, "expressions": 2, "frames": 0}
    with pytest.raises(DataError, match="unknown split 'valid'"):
        read_videos("a2d-sentences", a2d_root, "valid")


def test_train_video_frames_masks_and_boxes(a2d_root):
    (video,) = read_videos("a2d-sentences", a2d_root, "train")
    assert video.frame_names == ("00001", "00002", "00003", "00004", "00005", "00006")
    assert (video.height, video.width) == (H, W)
    assert [(e.exp_id, e.text, e.obj_id) for e in video.expressions] == [
        ("0", "the man on the left", 1),
        ("2", "a dog, running", 3),
    ]
    assert isinstance(video.frames, Mp4Frames) and video.frames.available() == T
    for t in (0, 3, 4, 1, 5, 5, 0):  # forwards, backwards, repeated
        frame = video.frames.read(t)
        assert frame.shape == (H, W, 3) and frame.dtype == np.uint8
        assert abs(float(frame.mean()) - grey(t)) < 3, t
    with pytest.raises(IndexError):
        video.frames.read(T)
    # "00002.h5" is index 1 (A2D frame numbers are 1-based); only annotated frames have masks
    assert isinstance(video.masks, H5InstanceMasks) and video.masks.annotated == {2, 5}
    assert video.masks.read(0) is None and video.masks.read(2) is None
    ids = video.masks.read(1)
    assert ids.shape == (H, W) and set(np.unique(ids)) == {0, 1, 3}
    assert video.boxes[1] == (None, (2.0, 3.0, 10.0, 40.0), None, None, None, None)
    assert video.boxes[3] == (None, (30.0, 5.0, 60.0, 12.0), None, None, (40.0, 1.0, 41.0, 47.0), None)
    clone = pickle.loads(pickle.dumps(video))
    assert clone == video and abs(float(clone.frames.read(2).mean()) - grey(2)) < 3


def test_test_video_without_mp4(a2d_root):
    (video,) = read_videos("a2d-sentences", a2d_root)
    assert video.frames is None and (video.height, video.width) == (0, 0)
    assert len(video.frame_names) == 9  # the videoset.csv frame count stands in for the missing mp4
    assert video.object_ids == (1,)  # the "(copy)" sentence has no target
    assert video.boxes[1][3] == (0.0, 0.0, 64.0, 48.0)
    assert sum(box is not None for box in video.boxes[1]) == 1


def test_annotation_file_inside_the_layout_finds_the_dataset(a2d_root):
    path = a2d_root / "text_annotations" / "a2d_annotation.txt"
    assert dataset_summary("a2d-sentences", path, "train") == {"videos": 1, "expressions": 2, "frames": T}


@pytest.mark.parametrize(
    "text,message",
    [
        ("vid,inst,query\nv,0,x\n", "expected the header"),
        ("video_id,instance_id,query\nv,0\n", "line 2: expected 3 columns"),
        ("video_id,instance_id,query\nv,0,x\nv,zero,y\n", "line 3: instance id 'zero'"),
        ("video_id,instance_id,query\nv,0,x\nv,0,y\n", "line 3: video v instance 0 appears twice"),
        ("video_id,instance_id,query\nv,0,  \n", "line 2: empty video id or query"),
    ],
)
def test_bad_annotation_rows_name_the_file(tmp_path, text, message):
    path = tmp_path / "a2d_annotation.txt"
    path.write_text(text)
    with pytest.raises(DataError, match=message) as error:
        read_videos("a2d-sentences", path)
    assert str(path) in str(error.value)


def test_bad_videoset_and_missing_files(a2d_root, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="a2d_annotation.txt: missing"):
        read_videos("a2d-sentences", empty)
    videoset = a2d_root / "Release" / "videoset.csv"
    videoset.write_text("vidTrain01,11,0,4.5,240,320,6,2,0\nvidTest001,21,0,3.0,240,320,9,1,2\n")
    with pytest.raises(DataError, match="line 2: split flag 2") as error:
        read_videos("a2d-sentences", a2d_root)
    assert str(videoset) in str(error.value)
    videoset.write_text("vidTrain01,11,0,4.5,240,320,6,2,0\n")
    with pytest.raises(DataError, match="has no row for 1 annotated videos, e.g. 'vidTest001'"):
        read_videos("a2d-sentences", a2d_root)


def test_malformed_h5_names_the_file(tmp_path):
    path = tmp_path / "00001.h5"
    with h5py.File(path, "w") as file:
        file["instance"] = np.asarray([0.0])
    with pytest.raises(DataError, match=r"missing dataset\(s\) reMask") as error:
        read_instance_h5(path)
    assert str(path) in str(error.value)
    write_h5(path, [0, 1], [rect(0, 0, 2, 2)])
    with pytest.raises(DataError, match="does not match 2 instance ids"):
        read_instance_h5(path)
    path.write_bytes(b"junk")
    with pytest.raises(DataError, match="unreadable HDF5"):
        read_instance_h5(path)


def test_unreadable_mp4_names_the_file(a2d_root):
    clip = a2d_root / "Release" / "clips320H" / "vidTrain01.mp4"
    clip.write_bytes(b"not a video at all" * 10)
    with pytest.raises(DataError, match="unreadable video") as error:
        list(read_videos("a2d-sentences", a2d_root, "train"))
    assert str(clip) in str(error.value)


def held_out(video_id: str, share: float = 0.1) -> bool:
    """The held-out rule computed apart: the first 16 hex digits of sha256(id) against ``share`` of 16**16."""
    return int(hashlib.sha256(video_id.encode()).hexdigest()[:16], 16) < share * 16**16


def test_held_out_parts_of_train_by_name(shared_data, tmp_path):
    """The real annotation file with a videoset.csv written here (every fifth video a test video)."""
    (tmp_path / "text_annotations").mkdir()
    shutil.copy(shared_data / "annotations" / "a2d_annotation.txt", tmp_path / "text_annotations" / "a2d_annotation.txt")
    videos = [v.video_id for v in read_videos("a2d-sentences", tmp_path / "text_annotations" / "a2d_annotation.txt")]
    test_ids = set(videos[::5])
    (tmp_path / "Release").mkdir()
    rows = [f"{video},11,0,3.0,240,320,8,1,{int(video in test_ids)}" for video in videos]
    (tmp_path / "Release" / "videoset.csv").write_text("\n".join(rows) + "\n")
    train = [v for v in videos if v not in test_ids]
    fit = [v.video_id for v in read_videos("a2d-sentences", tmp_path, "train-fit", with_boxes=False)]
    holdout = list(read_videos("a2d-sentences", tmp_path, "train-holdout", with_boxes=False))
    assert [v.video_id for v in holdout] == [v for v in train if held_out(v)]
    assert fit == [v for v in train if not held_out(v)]
    assert 0.07 * len(train) <= len(holdout) <= 0.13 * len(train)  # 10% of about 3,000 videos
    assert {v.split for v in holdout} == {"train-holdout"} and not test_ids & {v.video_id for v in holdout}
    for name in ("test-holdout", "test-fit"):
        with pytest.raises(DataError, match="'test' is a test split of a2d-sentences"):
            read_videos("a2d-sentences", tmp_path, name)


def test_all_has_no_held_out_parts(shared_data):
    """Without videoset.csv every sentence is split "all", test videos included: it cannot be divided."""
    with pytest.raises(DataError, match="'all' is a test split of a2d-sentences"):
        read_videos("a2d-sentences", shared_data / "annotations" / "a2d_annotation.txt", "all-holdout")


def test_a_dataset_in_a_bucket_reads_as_it_does_from_disk(a2d_root, bucket):
    """``data.root`` in object storage: the same videos, expressions, boxes, frames (mp4) and masks (.h5) as on disk."""
    upload_tree(a2d_root, f"{bucket}/a2d")
    for split in ("train", "test"):
        local = list(read_videos("a2d-sentences", a2d_root, split))
        remote = list(read_videos("a2d-sentences", f"{bucket}/a2d", split))
        assert_same_videos(remote, local)
    (train,) = read_videos("a2d-sentences", f"{bucket}/a2d/text_annotations/a2d_annotation.txt", "train")
    assert str(train.frames.file(0)) == f"{bucket}/a2d/Release/clips320H/vidTrain01.mp4"
    assert train.masks.annotated == {2, 5} and (train.height, train.width) == (H, W)
    assert train.boxes[3] == (None, (30.0, 5.0, 60.0, 12.0), None, None, (40.0, 1.0, 41.0, 47.0), None)
    assert abs(float(pickle.loads(pickle.dumps(train)).frames.read(4).mean()) - grey(4)) < 3


def test_a_bad_h5_in_a_bucket_names_the_object(a2d_root, bucket):
    write_h5(a2d_root / "text_annotations" / "a2d_annotation_with_instances" / "vidTest001" / "00004.h5", [0, 1], [rect(0, 0, 2, 2)])
    upload_tree(a2d_root, f"{bucket}/a2d")
    with pytest.raises(DataError, match="does not match 2 instance ids") as error:
        list(read_videos("a2d-sentences", f"{bucket}/a2d"))
    assert f"{bucket}/a2d/text_annotations/a2d_annotation_with_instances/vidTest001/00004.h5" in str(error.value)
