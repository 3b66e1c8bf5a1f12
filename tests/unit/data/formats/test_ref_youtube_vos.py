"""Ref-YouTube-VOS reader (also RefShapes): the real valid meta, and small train instances written here."""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from groprompt.data.formats import dataset_summary, read_videos
from groprompt.errors import DataError
from groprompt.evaluation.submission import submission_members
from groprompt.mask_io import write_index_png

H, W = 24, 32


def write_dataset(root: Path, split: str, videos: dict[str, dict], masks: dict[str, list[np.ndarray | None]]) -> None:
    """A tiny dataset in the ReferFormer layout; ``masks[video][t]`` is an id map, or None for no PNG."""
    meta = root / "meta_expressions" / split / "meta_expressions.json"
    meta.parent.mkdir(parents=True, exist_ok=True)
    meta.write_text(json.dumps({"videos": videos}))
    for video_id, entry in videos.items():
        for t, name in enumerate(entry["frames"]):
            frame = root / split / "JPEGImages" / video_id / f"{name}.jpg"
            frame.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((H, W, 3), 10 * t, np.uint8)).save(frame)
            ids = masks.get(video_id, [None] * len(entry["frames"]))[t]
            if ids is not None:
                write_index_png(root / split / "Annotations" / video_id / f"{name}.png", ids)


def box_map(boxes: dict[int, tuple[int, int, int, int]]) -> np.ndarray:
    ids = np.zeros((H, W), np.uint8)
    for obj, (x1, y1, x2, y2) in boxes.items():
        ids[y1:y2, x1:x2] = obj
    return ids


@pytest.fixture
def train_root(tmp_path: Path) -> Path:
    videos = {
        "vid_a": {
            "expressions": {
                "0": {"exp": "a red square moving left", "obj_id": "1", "type": "motion"},
                "1": {"exp": "the blue circle", "obj_id": "2", "type": "appearance"},
                "2": {"exp": " the square ", "obj_id": "1"},
            },
            "frames": ["00000", "00005", "00010", "00015"],
        },
        "vid_b": {"expressions": {"0": {"exp": "a cat", "obj_id": "3"}}, "frames": ["00000", "00005"]},
    }
    masks = {
        "vid_a": [
            box_map({1: (2, 3, 10, 8), 2: (20, 10, 30, 20)}),
            box_map({1: (4, 3, 12, 9)}),  # object 2 absent
            box_map({}),  # both objects absent
            box_map({2: (0, 0, 32, 24)}),  # object 1 absent, object 2 covers the frame
        ],
        "vid_b": [box_map({3: (5, 6, 7, 8)}), box_map({})],
    }
    write_dataset(tmp_path, "train", videos, masks)
    return tmp_path


def test_counts_of_the_real_valid_meta(shared_data):
    meta = shared_data / "annotations" / "ref-youtube-vos_valid_meta_expressions.json"
    assert dataset_summary("ref-youtube-vos", meta) == {"videos": 507, "expressions": 2096, "frames": 0}
    videos = list(read_videos("ref-youtube-vos", meta))
    assert all(e.obj_id is None for video in videos for e in video.expressions)
    assert all(video.object_ids == () and video.boxes == {} and video.split == "valid" for video in videos)
    first = videos[0]
    assert first.video_id == "0062f687f1" and first.frame_names[:2] == ("00000", "00005")
    assert first.expressions[0].text == "a dog is with its puppies on the cloth"


def test_train_records_and_boxes(train_root):
    videos = list(read_videos("ref-youtube-vos", train_root, "train"))
    assert [v.video_id for v in videos] == ["vid_a", "vid_b"]
    a, b = videos
    assert (a.dataset, a.split, a.height, a.width) == ("ref-youtube-vos", "train", H, W)
    assert [(e.exp_id, e.text, e.obj_id, e.kind) for e in a.expressions] == [
        ("0", "a red square moving left", 1, "motion"),
        ("1", "the blue circle", 2, "appearance"),
        ("2", "the square", 1, ""),
    ]
    assert a.object_ids == (1, 2)
    assert a.boxes[1] == ((2.0, 3.0, 10.0, 8.0), (4.0, 3.0, 12.0, 9.0), None, None)
    assert a.boxes[2] == ((20.0, 10.0, 30.0, 20.0), None, None, (0.0, 0.0, 32.0, 24.0))
    assert not a.masks.read(2).any()
    assert b.boxes == {3: ((5.0, 6.0, 7.0, 8.0), None)}
    frame = a.frames.read(3)
    assert frame.shape == (H, W, 3) and abs(float(frame.mean()) - 30) < 2
    assert pickle.loads(pickle.dumps(a)) == a
    assert dataset_summary("ref-youtube-vos", train_root, "train") == {"videos": 2, "expressions": 4, "frames": 6}


def test_meta_file_inside_the_layout_finds_frames_and_split(train_root):
    meta = train_root / "meta_expressions" / "train" / "meta_expressions.json"
    assert dataset_summary("ref-youtube-vos", meta) == {"videos": 2, "expressions": 4, "frames": 6}
    with pytest.raises(DataError, match="'train' meta, but split 'valid'"):
        dataset_summary("ref-youtube-vos", meta, "valid")


def test_default_split_is_valid(train_root):
    with pytest.raises(DataError, match=r"meta_expressions/valid/meta_expressions\.json: missing"):
        read_videos("ref-youtube-vos", train_root)


def test_refshapes_uses_the_same_layout(train_root):
    videos = list(read_videos("refshapes", train_root, "train"))
    assert {v.dataset for v in videos} == {"refshapes"}
    assert videos[0].expressions[1].kind == "appearance"


def test_valid_drops_the_test_videos_and_refuses_without_the_test_meta(tmp_path):
    """The "valid" meta lists valid and test videos together; the submission's members are the valid ones only."""
    expressions = {"0": {"exp": "something"}, "1": {"exp": "something else"}}
    valid = {name: {"expressions": expressions, "frames": ["00000", "00005"]} for name in ("v1", "v2", "t1")}
    write_dataset(tmp_path, "valid", valid, {})
    with pytest.raises(DataError, match=r"meta_expressions/test/meta_expressions\.json: missing; the Ref-YouTube-VOS 'valid'"):
        list(read_videos("ref-youtube-vos", tmp_path))
    meta_test = tmp_path / "meta_expressions" / "test" / "meta_expressions.json"
    meta_test.parent.mkdir(parents=True)
    meta_test.write_text(json.dumps({"videos": {"t1": {"expressions": expressions, "frames": ["00000"]}}}))
    videos = list(read_videos("ref-youtube-vos", tmp_path))
    assert [v.video_id for v in videos] == ["v1", "v2"]
    expected = {(v, e, f) for v in ("v1", "v2") for e in ("0", "1") for f in ("00000", "00005")}
    assert submission_members(videos) == expected
    assert dataset_summary("ref-youtube-vos", tmp_path) == {"videos": 2, "expressions": 4, "frames": 4}
    assert len(list(read_videos("refshapes", tmp_path))) == 3  # only Ref-YouTube-VOS mixes test into valid


def test_refshapes_reads_a_sentence_about_several_objects_as_a_group(tmp_path):
    """Objects 1-3; [3, 1] and [1, 3] are one group, numbered after object 3; [1, 2] the next one."""
    expressions = {
        "0": {"exp": "the square", "obj_id": "1", "type": "appearance"},
        "1": {"exp": "the two red shapes", "obj_id": ["3", "1"], "type": "multi-object"},
        "2": {"exp": "the circle", "obj_id": "3", "type": "appearance"},
        "3": {"exp": "the red shapes", "obj_id": [1, 3], "type": "multi-object"},
        "4": {"exp": "the squares", "obj_id": ["1", "2"], "type": "multi-object"},
    }
    videos = {"v": {"expressions": expressions, "frames": ["00000", "00001"]}}
    masks = {"v": [box_map({1: (2, 3, 6, 5), 2: (8, 8, 10, 10), 3: (20, 10, 24, 14)}), box_map({2: (8, 8, 10, 10)})]}
    write_dataset(tmp_path, "train", videos, masks)
    (video,) = read_videos("refshapes", tmp_path, "train")
    assert [e.obj_id for e in video.expressions] == [1, 4, 3, 4, 5]
    assert video.groups == {4: (1, 3), 5: (1, 2)} and video.object_ids == (1, 3, 4, 5)
    assert video.boxes[4] == ((2.0, 3.0, 24.0, 14.0), None)  # the union box; neither object in frame 1
    assert video.boxes[5] == ((2.0, 3.0, 10.0, 10.0), (8.0, 8.0, 10.0, 10.0))  # object 2 alone in frame 1
    write_dataset(tmp_path, "valid", videos, {})  # Ref-YouTube-VOS has no such sentences: a list is refused
    with pytest.raises(DataError, match=r"expression '1': obj_id \['3', '1'\] is not an integer"):
        list(read_videos("ref-youtube-vos", tmp_path / "meta_expressions" / "valid" / "meta_expressions.json"))


@pytest.mark.parametrize("obj_id", [["1"], ["1", "1"], ["1", None], []])
def test_refshapes_refuses_an_obj_id_list_of_fewer_than_two_distinct_objects(tmp_path, obj_id):
    path = _meta(tmp_path, json.dumps({"videos": {"v": {"frames": ["0"], "expressions": {"3": {"exp": "x", "obj_id": obj_id}}}}}))
    with pytest.raises(DataError, match="expression '3': an obj_id list must name two or more distinct objects") as error:
        read_videos("refshapes", path)
    assert str(path) in str(error.value)


def _meta(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "meta.json"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text,message",
    [
        ("{not json", "invalid JSON"),
        ('{"vids": {}}', 'expected an object with a "videos" object'),
        ('{"videos": {"v": {"expressions": {}}}}', "video 'v': has no \"frames\" list"),
        ('{"videos": {"v": {"frames": ["0"]}}}', "video 'v': has no \"expressions\" object"),
        ('{"videos": {"v": {"frames": ["0"], "expressions": {"3": {"obj_id": "1"}}}}}', "expression '3': has no \"exp\""),
        ('{"videos": {"v": {"frames": ["0"], "expressions": {"3": {"exp": "x", "obj_id": "one"}}}}}', "not an integer"),
    ],
)
def test_malformed_meta_names_the_file(tmp_path, text, message):
    path = _meta(tmp_path, text)
    with pytest.raises(DataError, match=message) as error:
        read_videos("ref-youtube-vos", path)
    assert str(path) in str(error.value)


def test_missing_root_and_unreadable_mask(train_root, tmp_path):
    with pytest.raises(DataError, match="no such dataset folder"):
        read_videos("ref-youtube-vos", tmp_path / "nowhere")
    bad = train_root / "train" / "Annotations" / "vid_b" / "00005.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(DataError, match="unreadable image") as error:
        list(read_videos("ref-youtube-vos", train_root, "train"))
    assert str(bad) in str(error.value)
    # counting reads no mask
    assert dataset_summary("ref-youtube-vos", train_root, "train")["videos"] == 2


def held_out(video_id: str, share: float = 0.1) -> bool:
    """The held-out rule computed apart: the first 16 hex digits of sha256(id) against ``share`` of 16**16."""
    return int(hashlib.sha256(video_id.encode()).hexdigest()[:16], 16) < share * 16**16


def test_held_out_parts_of_train_by_name(shared_data, tmp_path):
    """The real 507-video meta laid out as a train split: "train-fit" and "train-holdout" divide it by video id."""
    meta = tmp_path / "meta_expressions" / "train" / "meta_expressions.json"
    meta.parent.mkdir(parents=True)
    shutil.copy(shared_data / "annotations" / "ref-youtube-vos_valid_meta_expressions.json", meta)
    train = [v.video_id for v in read_videos("ref-youtube-vos", tmp_path, "train")]
    fit = list(read_videos("ref-youtube-vos", tmp_path, "train-fit", with_boxes=False))
    holdout = list(read_videos("ref-youtube-vos", tmp_path, "train-holdout", with_boxes=False))
    assert len(train) == 507
    assert [v.video_id for v in holdout] == [i for i in train if held_out(i)]
    assert [v.video_id for v in fit] == [i for i in train if not held_out(i)]
    assert 30 <= len(holdout) <= 75  # 10% of 507
    assert {v.split for v in fit} == {"train-fit"} and {v.split for v in holdout} == {"train-holdout"}
    assert sum(len(v.expressions) for v in fit + holdout) == 2096
    wider = [v.video_id for v in read_videos("ref-youtube-vos", tmp_path, "train-holdout-20pct")]
    assert wider == [i for i in train if held_out(i, 0.2)] and set(wider) > {v.video_id for v in holdout}
    summary = dataset_summary("ref-youtube-vos", tmp_path, "train-holdout")
    assert summary == {"videos": len(holdout), "expressions": sum(len(v.expressions) for v in holdout), "frames": 0}


def test_valid_and_test_have_no_held_out_parts(train_root):
    for name in ("valid-holdout", "test-fit"):
        with pytest.raises(DataError, match=f"split {name!r}: .* is a test split of ref-youtube-vos"):
            read_videos("ref-youtube-vos", train_root, name)
