"""JHMDB-Sentences reader: the real samples metadata, and a tiny dataset (PNG frames + puppet_mask.mat) written here."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import boto3
import h5py
import numpy as np
import pytest
import scipy.io
from PIL import Image

from groprompt.data.formats import dataset_summary, read_videos
from groprompt.data.formats.jhmdb_sentences import PuppetMasks, load_part_mask
from groprompt.errors import DataError
from groprompt.files import location
from tests.helpers import assert_same_videos, upload_tree

H, W, T = 30, 40, 5  # not square: a transposition mistake changes the shapes and the boxes
FRAMES = "Rename_Images/catch/vid_one/{:05d}.png"
MASK = "puppet_mask/catch/vid_one/puppet_mask.mat"


def part_mask() -> np.ndarray:
    """H x W x T, as MATLAB holds it; the person sits at x 3..9+t, y 2..20; frame 4 (index 3) is empty."""
    masks = np.zeros((H, W, T), np.uint8)
    for t in range(T):
        if t != 3:
            masks[2:20, 3 : 10 + t, t] = 1
    return masks


def write_v73_mat(path: Path, name: str, array: np.ndarray) -> None:
    """A MATLAB v7.3 file: HDF5 behind a 512-byte MATLAB header, arrays stored with their axes reversed."""
    with h5py.File(path, "w", userblock_size=512) as file:
        file[name] = np.ascontiguousarray(array.transpose(2, 1, 0))
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: test HDF5 schema 1.00 ."
    with open(path, "r+b") as file:
        file.write(header.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM")


@pytest.fixture
def jhmdb_root(tmp_path: Path) -> Path:
    for t in range(1, T + 1):
        path = tmp_path / FRAMES.format(t)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((H, W, 3), 40 * t, np.uint8)).save(path)
    (tmp_path / MASK).parent.mkdir(parents=True)
    scipy.io.savemat(tmp_path / MASK, {"part_mask": part_mask()})
    samples = [
        ["vid_one", FRAMES.format(1), MASK, T, "man catching a ball"],
        ["vid_one", FRAMES.format(3), MASK, T, "man catching a ball"],
        ["vid_one", FRAMES.format(4), MASK, T, "man catching a ball"],
        ["vid_two", "Rename_Images/run/vid_two/00002.png", "puppet_mask/run/vid_two/puppet_mask.mat", 7, "a runner"],
    ]
    (tmp_path / "jhmdb_sentences_samples_metadata.json").write_text(json.dumps(samples))
    return tmp_path


def test_counts_of_the_real_metadata(shared_data):
    path = shared_data / "annotations" / "jhmdb_sentences_samples_metadata.json"
    summary = dataset_summary("jhmdb-sentences", path)
    assert summary == {"videos": 928, "expressions": 928, "frames": 0, "samples": 2784}
    videos = list(read_videos("jhmdb-sentences", path))
    assert all(video.object_ids == (1,) and len(video.expressions) == 1 for video in videos)
    first = videos[0]
    assert first.video_id == "100_pullups_pullup_f_nm_np1_fr_med_1" and len(first.frame_names) == 40
    assert first.frame_names[0] == "00001" and first.expressions[0].text == "man in black pulling up"
    assert first.frames is None and first.masks is None


def test_records_frames_masks_and_boxes(jhmdb_root):
    one, two = read_videos("jhmdb-sentences", jhmdb_root)
    assert (one.dataset, one.split, one.video_id, one.height, one.width) == ("jhmdb-sentences", "test", "vid_one", H, W)
    assert one.frame_names == ("00001", "00002", "00003", "00004", "00005")
    assert [(e.exp_id, e.text, e.obj_id) for e in one.expressions] == [("0", "man catching a ball", 1)]
    assert one.frames.available() == T
    assert abs(float(one.frames.read(2).mean()) - 120) < 1  # "00003.png" is index 2
    # the sampled frames (1, 3, 4: indices 0, 2, 3) carry the masks; the empty one has no box
    assert isinstance(one.masks, PuppetMasks) and one.masks.annotated == {0, 2, 3}
    assert one.masks.read(1) is None
    np.testing.assert_array_equal(one.masks.read(2), part_mask()[:, :, 2].astype(np.int32))
    assert one.boxes == {1: ((3.0, 2.0, 10.0, 20.0), None, (3.0, 2.0, 12.0, 20.0), None, None)}
    assert PuppetMasks(one.masks.path).read(4).sum() == 18 * 11  # every frame when no samples are given
    assert two.frames is None and two.masks is None and two.boxes == {1: (None,) * 7}
    assert pickle.loads(pickle.dumps(one)) == one
    assert dataset_summary("jhmdb-sentences", jhmdb_root) == {"videos": 2, "expressions": 2, "frames": T, "samples": 4}


def test_matlab_v73_files_read_like_v5(jhmdb_root):
    v5 = load_part_mask(jhmdb_root / MASK)
    write_v73_mat(jhmdb_root / MASK, "part_mask", part_mask())
    with pytest.raises(NotImplementedError):
        scipy.io.loadmat(jhmdb_root / MASK)
    v73 = load_part_mask(jhmdb_root / MASK)
    assert v73.shape == (T, H, W)
    np.testing.assert_array_equal(v73, v5)


def test_split_and_errors(jhmdb_root, tmp_path):
    with pytest.raises(DataError, match="no split 'train'"):
        read_videos("jhmdb-sentences", jhmdb_root, "train")
    assert len(list(read_videos("jhmdb-sentences", jhmdb_root, "test"))) == 2
    mat = jhmdb_root / MASK
    scipy.io.savemat(mat, {"other": np.zeros((2, 2))})
    with pytest.raises(DataError, match="has no part_mask variable") as error:
        list(read_videos("jhmdb-sentences", jhmdb_root))
    assert str(mat) in str(error.value)
    mat.write_bytes(b"garbage")
    with pytest.raises(DataError, match="unreadable .mat file"):
        list(read_videos("jhmdb-sentences", jhmdb_root))


@pytest.mark.parametrize(
    "samples,message",
    [
        ({"a": 1}, "expected a list of samples"),
        ([["v", FRAMES.format(1), MASK, T]], "sample 0: expected"),
        ([["v", FRAMES.format(1), MASK, 0, "x"]], "n_frames 0 is not a positive integer"),
        ([["v", FRAMES.format(9), MASK, T, "x"]], "is not a 1-based frame number"),
        ([["v", FRAMES.format(1), MASK, T, "x"], ["v", FRAMES.format(2), MASK, T + 1, "x"]], "sample 1: disagrees"),
    ],
)
def test_malformed_metadata_names_the_file(tmp_path, samples, message):
    path = tmp_path / "meta.json"
    path.write_text(json.dumps(samples))
    with pytest.raises(DataError, match=message) as error:
        read_videos("jhmdb-sentences", path)
    assert str(path) in str(error.value)


def test_missing_metadata(tmp_path):
    with pytest.raises(DataError, match="jhmdb_sentences_samples_metadata.json: missing"):
        read_videos("jhmdb-sentences", tmp_path)


def test_a_dataset_in_a_bucket_reads_as_it_does_from_disk(jhmdb_root, bucket):
    """``data.root`` in object storage: the same videos, expressions, boxes, frames and masks (.mat v5 and v7.3) as on
    disk."""
    upload_tree(jhmdb_root, f"{bucket}/v5")
    write_v73_mat(jhmdb_root / MASK, "part_mask", part_mask())
    upload_tree(jhmdb_root, f"{bucket}/v73")
    local = list(read_videos("jhmdb-sentences", jhmdb_root))
    for prefix in ("v5", "v73"):
        remote = list(read_videos("jhmdb-sentences", f"{bucket}/{prefix}"))
        assert_same_videos(remote, local)
        assert str(remote[0].masks.file(0)) == f"{bucket}/{prefix}/{MASK}"
        assert remote[0].boxes == {1: ((3.0, 2.0, 10.0, 20.0), None, (3.0, 2.0, 12.0, 20.0), None, None)}
        assert PuppetMasks(remote[0].masks.path).read(4).sum() == 18 * 11
        metadata = f"{bucket}/{prefix}/jhmdb_sentences_samples_metadata.json"
        assert dataset_summary("jhmdb-sentences", metadata) == {"videos": 2, "expressions": 2, "frames": T, "samples": 4}


def test_a_missing_mask_object_is_named(jhmdb_root, bucket):
    upload_tree(jhmdb_root, f"{bucket}/jhmdb")
    boto3.client("s3").delete_object(Bucket=bucket.removeprefix("s3://"), Key=f"jhmdb/{MASK}")
    with pytest.raises(DataError, match="puppet mask file missing") as error:
        load_part_mask(location(f"{bucket}/jhmdb/{MASK}"))
    assert f"{bucket}/jhmdb/{MASK}" in str(error.value)
