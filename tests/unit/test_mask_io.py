"""COCO RLE, the per-expression and per-frame PNG layouts, and the Ref-YouTube-VOS submission zip (complete against the
split's meta)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from groprompt.data.formats import read_videos
from groprompt.errors import DataError
from groprompt.evaluation.mask_folders import evaluate_folders
from groprompt.evaluation.submission import submission_members
from groprompt.mask_io import (
    check_submission,
    ids_from_masks,
    mask_to_rle,
    read_index_png,
    rle_to_mask,
    write_expression_pngs,
    write_index_png,
    write_object_pngs,
    write_submission_zip,
)


def random_masks(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    shapes = [(1, 1), (7, 13), (48, 64), (33, 20)]
    masks = [rng.random(shape) < p for shape, p in zip(shapes, (0.5, 0.3, 0.1, 0.9))]
    return masks + [np.zeros((5, 6), bool), np.ones((6, 5), bool)]


def test_rle_round_trip_is_json_safe_and_agrees_with_pycocotools() -> None:
    for mask in random_masks():
        rle = mask_to_rle(mask)
        assert rle["size"] == list(mask.shape) and isinstance(rle["counts"], str)
        decoded = rle_to_mask(json.loads(json.dumps(rle)))
        assert decoded.dtype == bool and np.array_equal(decoded, mask)
        as_bytes = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
        assert int(mask_utils.area(as_bytes)) == int(mask.sum())
        assert np.array_equal(rle_to_mask(as_bytes), mask)
    assert np.array_equal(rle_to_mask(mask_to_rle(np.eye(4, dtype=np.uint8) * 7)), np.eye(4, dtype=bool))


def test_rle_errors() -> None:
    with pytest.raises(ValueError, match="mask"):
        mask_to_rle(np.zeros((2, 3, 4), bool))
    for bad in ({"size": [3, 4]}, {"counts": "abc"}, {"size": [3], "counts": "abc"}, {"size": [3, 4], "counts": 5}):
        with pytest.raises(DataError, match="COCO RLE"):
            rle_to_mask(bad)


def test_ids_from_masks_paints_higher_ids_last() -> None:
    a, b = np.zeros((4, 5), bool), np.zeros((4, 5), bool)
    a[:2, :3], b[1:3, 2:] = True, True
    ids = ids_from_masks({3: b, 1: a})
    assert ids.dtype == np.uint8
    assert ids[0, 0] == 1 and ids[1, 2] == 3 and ids[2, 4] == 3 and ids[3, 0] == 0 and ids[0, 4] == 0
    for bad in ({}, {0: a}, {255: a}, {1: a, 2: np.zeros((3, 5), bool)}):
        with pytest.raises(ValueError):
            ids_from_masks(bad)


def test_expression_pngs_layout(tmp_path: Path) -> None:
    masks = random_masks(1)[1:3]
    count = write_expression_pngs(tmp_path, "vid", "0", zip(["00000", "00005"], masks))
    assert count == 2
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.png")) == ["vid/0/00000.png", "vid/0/00005.png"]
    for name, mask in zip(["00000", "00005"], masks):
        ids = read_index_png(tmp_path / "vid" / "0" / f"{name}.png")
        assert np.array_equal(ids, mask.astype(np.int32))
        with Image.open(tmp_path / "vid" / "0" / f"{name}.png") as image:
            assert image.mode == "P"
    assert not list(tmp_path.rglob(".*"))  # no temporary files left


def test_object_pngs_score_with_eval_masks(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    frames = {f"{t:05d}": {1: rng.random((24, 32)) < 0.3, 2: rng.random((24, 32)) < 0.2} for t in range(3)}
    assert write_object_pngs(tmp_path / "pred", "seq", frames.items()) == 3
    for name, masks in frames.items():
        assert np.array_equal(read_index_png(tmp_path / "pred" / "seq" / f"{name}.png"), ids_from_masks(masks))
        write_index_png(tmp_path / "gt" / "seq" / f"{name}.png", ids_from_masks(masks))
    [scores] = evaluate_folders(tmp_path / "gt", tmp_path / "pred")
    assert scores.object_ids == (1, 2) and scores.j_mean == 1.0


def test_submission_zip_members_and_masks(tmp_path: Path) -> None:
    masks = random_masks(3)[1:4]
    entries = [("vid_a", "0", "00000", masks[0]), ("vid_a", "1", "00000", masks[1]), ("vid_b", "0", "00010", masks[2])]
    path = tmp_path / "out" / "submission.zip"
    assert write_submission_zip(path, iter(entries)) == 3
    assert sorted(p.name for p in path.parent.iterdir()) == ["submission.zip"]
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist() == [f"Annotations/{v}/{e}/{f}.png" for v, e, f, _ in entries]
        for (_video, _exp_id, _frame, mask), name in zip(entries, archive.namelist()):
            with Image.open(io.BytesIO(archive.read(name))) as image:
                assert image.mode == "L" and image.format == "PNG"
                pixels = np.asarray(image)
            assert set(np.unique(pixels)) <= {0, 255}
            assert np.array_equal(pixels == 255, mask)


@pytest.mark.parametrize(
    "video, exp_id, frame",
    [
        ("../etc", "0", "00000"),
        ("/abs", "0", "00000"),
        ("vid", "a/b", "00000"),
        ("vid", "..", "00000"),
        ("vid", "0", ""),
        ("vid", "0", "x\\y"),
        ("vid", ".", "00000"),
        (" vid", "0", "00000"),
    ],
)
def test_submission_zip_refuses_unsafe_names_and_keeps_the_old_file(tmp_path: Path, video, exp_id, frame) -> None:
    path = tmp_path / "submission.zip"
    path.write_bytes(b"previous")
    mask = np.ones((4, 4), bool)
    with pytest.raises(ValueError, match="unsafe name"):
        write_submission_zip(path, [("vid", "0", "00000", mask), (video, exp_id, frame, mask)])
    assert path.read_bytes() == b"previous" and sorted(p.name for p in tmp_path.iterdir()) == ["submission.zip"]


def test_submission_zip_refuses_duplicates_and_bad_masks(tmp_path: Path) -> None:
    mask = np.ones((4, 4), bool)
    with pytest.raises(ValueError, match="duplicate"):
        write_submission_zip(tmp_path / "s.zip", [("v", "0", "00000", mask), ("v", "0", "00000", mask)])
    with pytest.raises(ValueError, match="mask"):
        write_submission_zip(tmp_path / "s.zip", [("v", "0", "00000", np.ones((1, 4, 4), bool))])
    with pytest.raises(ValueError, match="unsafe name"):
        write_expression_pngs(tmp_path, "..", "0", [("00000", mask)])
    assert list(tmp_path.iterdir()) == []


def small_meta(root: Path) -> Path:
    """A Ref-YouTube-VOS valid meta (no obj_id) of two valid videos, 2 expressions x 3 frames and 1 x 2 = 8 masks, and
    one test video that the "valid" meta lists too (as the released one does) and the test meta names."""
    test_video = {"t0t0t0": {"expressions": {"0": {"exp": "a bird"}}, "frames": ["00000"]}}
    meta = {
        "videos": {
            "a1b2c3": {"expressions": {"0": {"exp": "a dog"}, "1": {"exp": "a cat"}}, "frames": ["00000", "00005", "00010"]},
            "d4e5f6": {"expressions": {"0": {"exp": "a man surfing"}}, "frames": ["00000", "00005"]},
            **test_video,
        }
    }
    for split, content in (("valid", meta), ("test", {"videos": test_video})):
        path = root / "meta_expressions" / split / "meta_expressions.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(content))
    return root / "meta_expressions" / "valid" / "meta_expressions.json"


def test_submission_zip_is_checked_against_the_split_meta(tmp_path: Path) -> None:
    meta = small_meta(tmp_path / "ytvos")
    expected = submission_members(read_videos("ref-youtube-vos", meta, with_boxes=False))
    complete = [("a1b2c3", e, f) for e in ("0", "1") for f in ("00000", "00005", "00010")] + [
        ("d4e5f6", "0", f) for f in ("00000", "00005")
    ]
    assert expected == set(complete)
    mask = np.zeros((4, 4), bool)
    path = tmp_path / "submission.zip"
    assert write_submission_zip(path, [(*member, mask) for member in complete], expected) == 8

    missing = [m for m in complete if m != ("a1b2c3", "1", "00005")]
    with pytest.raises(DataError, match=r"1 of the 8 expected masks missing \(first: Annotations/a1b2c3/1/00005\.png\)") as error:
        write_submission_zip(tmp_path / "partial.zip", [(*member, mask) for member in missing], expected)
    assert "7 masks written" in str(error.value) and not (tmp_path / "partial.zip").exists()
    extra = [*missing, ("d4e5f6", "0", "00010"), ("zzz", "0", "00000")]
    with pytest.raises(DataError, match=r"2 masks not in the split \(first: Annotations/d4e5f6/0/00010\.png\)"):
        write_submission_zip(path, [(*member, mask) for member in extra], expected)
    with zipfile.ZipFile(path) as archive:  # the complete zip written before is still there
        assert len(archive.namelist()) == 8


def test_submission_check_against_the_real_valid_meta(shared_data: Path) -> None:
    meta_file = shared_data / "annotations" / "ref-youtube-vos_valid_meta_expressions.json"
    raw = json.loads(meta_file.read_text())["videos"]
    n_masks = sum(len(video["expressions"]) * len(video["frames"]) for video in raw.values())
    expected = submission_members(read_videos("ref-youtube-vos", meta_file, with_boxes=False))
    assert len(expected) == n_masks and len(raw) == 507
    check_submission("sub.zip", expected, expected)
    first = min(expected)
    with pytest.raises(
        DataError, match=rf"1 of the {n_masks} expected masks missing \(first: Annotations/{first[0]}/{first[1]}/{first[2]}\.png\)"
    ):
        check_submission("sub.zip", expected - {first}, expected)
