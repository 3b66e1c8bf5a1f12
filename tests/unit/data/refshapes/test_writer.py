"""Writing to disk: the Ref-YouTube-VOS layout (a multi-object expression's obj_id lists its objects), read back with
its groups, byte-for-byte determinism, resuming, and refusing another spec; writing to a bucket as to disk."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from groprompt.data.formats import read_videos
from groprompt.data.refshapes.sentences import KINDS
from groprompt.data.refshapes.spec import RefShapesSpec
from groprompt.data.refshapes.video import make_video
from groprompt.data.refshapes.writer import SPEC_FILE, write_refshapes
from groprompt.errors import DataError
from groprompt.mask_io import read_index_png
from tests.helpers import bucket_contents


def file_hashes(root: Path) -> dict[str, str]:
    """The sha256 of every file under ``root``, by relative path."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def bucket_files(name: str) -> dict[str, bytes]:
    """Every object in the bucket by key, but the empty folder markers (``prefix/``) that pyarrow's S3 move leaves."""
    return {key: data for key, data in bucket_contents(name).items() if not key.endswith("/")}


def test_written_layout_matches_ref_youtube_vos(tmp_path: Path, small_spec: RefShapesSpec) -> None:
    splits = write_refshapes(tmp_path, small_spec, valid_fraction=0.25, progress=False)
    assert len(splits["valid"]) == 1 and len(splits["train"]) == 3
    for split, video_ids in splits.items():
        meta = json.loads((tmp_path / "meta_expressions" / split / "meta_expressions.json").read_text())
        objects_meta = json.loads((tmp_path / split / "meta.json").read_text())["videos"]
        assert sorted(meta["videos"]) == sorted(video_ids) == sorted(objects_meta)
        for vid, entry in meta["videos"].items():
            video = make_video(small_spec, int(vid[2:]))
            assert entry["frames"] == [f"{t:05d}" for t in range(small_spec.frames)]
            assert sorted(objects_meta[vid]["objects"]) == [str(obj.obj_id) for obj in video.objects]
            for expression in entry["expressions"].values():
                assert set(expression) == {"exp", "obj_id", "type"} and expression["type"] in KINDS
                several = isinstance(expression["obj_id"], list)
                assert several == (expression["type"] == "multi-object")
                named = expression["obj_id"] if several else [expression["obj_id"]]
                assert set(named) <= set(objects_meta[vid]["objects"]) and len(set(named)) == len(named)
                assert (len(named) >= 2) == several
            for t, name in enumerate(entry["frames"]):
                with Image.open(tmp_path / split / "JPEGImages" / vid / f"{name}.jpg") as image:
                    assert image.format == "JPEG" and image.size == (small_spec.size, small_spec.size)
                ids = read_index_png(tmp_path / split / "Annotations" / vid / f"{name}.png")
                assert np.array_equal(ids, video.ids[t])
    assert json.loads((tmp_path / SPEC_FILE).read_text())["spec"]["seed"] == small_spec.seed
    assert not list(tmp_path.rglob(".*")), "no temporary files are left behind"


def test_read_back_a_multi_object_expression_targets_the_union_of_its_objects(tmp_path: Path, small_spec: RefShapesSpec) -> None:
    write_refshapes(tmp_path, small_spec, valid_fraction=0.25, progress=False)
    read = {v.video_id: v for split in ("train", "valid") for v in read_videos("refshapes", tmp_path, split)}
    grouped = 0
    for index in range(small_spec.videos):
        video = make_video(small_spec, index)
        back = read[video.video_id]
        assert back.expressions == video.expressions and back.groups == video.groups
        for group, members in video.groups.items():
            grouped += 1
            for t, ids in enumerate(video.ids):  # the union box of the members' pixels, None where none is in view
                ys, xs = np.nonzero(np.isin(ids, members))
                expected = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) if len(xs) else None
                assert back.boxes[group][t] == expected
    assert grouped > 0


def test_writing_is_deterministic_resumable_and_refuses_another_spec(tmp_path: Path, small_spec: RefShapesSpec) -> None:
    write_refshapes(tmp_path / "a", small_spec, progress=False)
    write_refshapes(tmp_path / "b", small_spec, progress=False)
    hashes = file_hashes(tmp_path / "a")
    assert hashes == file_hashes(tmp_path / "b")
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "a").rglob("*")}
    write_refshapes(tmp_path / "a", small_spec, progress=False)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "a").rglob("*")} == mtimes, "a complete output is left alone"
    with pytest.raises(DataError, match="seed"):
        write_refshapes(tmp_path / "a", replace(small_spec, seed=9), progress=False)
    # An interrupted run: no spec file and no expressions yet. It is redone, byte for byte.
    (tmp_path / "a" / SPEC_FILE).unlink()
    (tmp_path / "a" / "meta_expressions" / "train" / "meta_expressions.json").unlink()
    write_refshapes(tmp_path / "a", small_spec, progress=False)
    assert file_hashes(tmp_path / "a") == hashes


def test_a_bucket_gets_the_local_bytes_and_a_rerun_leaves_them(tmp_path: Path, small_spec: RefShapesSpec, bucket: str) -> None:
    import boto3

    local_splits = write_refshapes(tmp_path, small_spec, progress=False)
    expected = {f"refshapes/{p.relative_to(tmp_path).as_posix()}": p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    name, target = bucket.removeprefix("s3://"), f"{bucket}/refshapes"
    assert write_refshapes(target, small_spec, progress=False) == local_splits
    assert bucket_files(name) == expected, "the same keys and bytes, and no hidden upload key left behind"
    # A complete output is left alone: a frame changed behind the writer's back stays changed.
    frame = next(key for key in sorted(expected) if key.endswith(".jpg"))
    s3 = boto3.client("s3")
    s3.put_object(Bucket=name, Key=frame, Body=b"left alone")
    write_refshapes(target, small_spec, progress=False)
    assert bucket_files(name) == {**expected, frame: b"left alone"}
    with pytest.raises(DataError, match=f"{target}: holds RefShapes generated with"):
        write_refshapes(target, replace(small_spec, seed=9), progress=False)
    # An interrupted run (no spec file yet) is redone, byte for byte.
    s3.delete_object(Bucket=name, Key=f"refshapes/{SPEC_FILE}")
    write_refshapes(target, small_spec, progress=False)
    assert bucket_files(name) == expected
