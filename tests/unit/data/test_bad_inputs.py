"""Broken inputs (``tests.bad_inputs``) are refused as one line naming the file and the problem, nothing half-written.

Source cases go through the readers and the shard writer; ``skip_bad`` leaves a bad video out whole and lists it.
Shard cases (a tar cut at a member boundary, a tar edited after its manifest) are refused where training reads them.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from groprompt.config import DataConfig
from groprompt.data.embeddings import embed_shard
from groprompt.data.formats import read_videos
from groprompt.data.manifest import MANIFEST, write_manifest
from groprompt.data.shard_pairs import ShardPair, shard_pairs
from groprompt.data.shards import (
    ShardSample,
    ShardSettings,
    check_shard,
    check_video,
    plan_shards,
    shard_refusals,
    shard_videos,
    write_shard,
)
from groprompt.errors import DataError
from groprompt.files import sha256_file
from groprompt.models.sam import FrozenSam
from tests.bad_inputs import BAD_VIDEO, SOURCE_CASES, BadInput, case, cut_shard, edit_shard, empty_jpeg, remove_png, short_davis

SETTINGS = ShardSettings(window=4, with_masks=True)  # frames of 854x480 kept as they are: JPEG bytes copied
MANIFEST_COLUMNS = ("shard", "samples", "n_samples", "n_frames", "bytes", "sha256")
PER_VIDEO = [bad for bad in SOURCE_CASES if bad.per_video]
ANNOTATION_FILE = [bad for bad in SOURCE_CASES if not bad.per_video]


def shard_all(root: Path, out: Path, settings: ShardSettings = SETTINGS, skip_bad: bool = False) -> list[dict[str, Any]]:
    """What the shard stage does, without Ray: read, plan, write every shard into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    videos = list(read_videos("ref-davis17", root, "valid", with_boxes=False))
    return [write_shard(plan, out, settings, skip_bad=skip_bad) for plan in plan_shards(videos, settings)]


def assert_one_line_naming(error: DataError, path: Path, problem: str) -> None:
    message = str(error)
    assert "\n" not in message
    assert str(path) in message
    assert re.search(problem, message), message


@pytest.mark.parametrize("max_side", [1024, 256], ids=["copied", "resized"])
@pytest.mark.parametrize("bad", SOURCE_CASES, ids=lambda bad: bad.name)
def test_a_broken_input_is_refused_naming_the_file_and_nothing_is_written(
    shared_data: Path, tmp_path: Path, bad: BadInput, max_side: int
) -> None:
    root = short_davis(shared_data, tmp_path)
    damaged = bad.damage(root)
    out = tmp_path / "shards"
    with pytest.raises(DataError) as caught:
        shard_all(root, out, replace(SETTINGS, max_side=max_side))
    assert_one_line_naming(caught.value, damaged, bad.problem)
    assert os.listdir(out) == []  # no tar, no record, no temporary file


@pytest.mark.parametrize("bad", PER_VIDEO, ids=lambda bad: bad.name)
def test_skip_bad_leaves_the_bad_video_out_whole_and_lists_it(shared_data: Path, tmp_path: Path, bad: BadInput) -> None:
    root = short_davis(shared_data, tmp_path)
    damaged = bad.damage(root)
    out = tmp_path / "shards"
    records = shard_all(root, out, skip_bad=True)
    assert [key for record in records for key in record["samples"]] == ["blackswan__00000", "blackswan__00004"]
    rejected = [entry for record in records for entry in record["rejected"]]
    assert [entry["video"] for entry in rejected] == [BAD_VIDEO]
    assert str(damaged) in rejected[0]["reason"] and re.search(bad.problem, rejected[0]["reason"])
    assert sorted(os.listdir(out)) == ["shard-000000.tar", "shard-000000.tar.json"]


@pytest.mark.parametrize("bad", ANNOTATION_FILE, ids=lambda bad: bad.name)
def test_a_broken_annotation_file_stops_even_a_skip_bad_run(shared_data: Path, tmp_path: Path, bad: BadInput) -> None:
    root = short_davis(shared_data, tmp_path)
    damaged = bad.damage(root)
    with pytest.raises(DataError) as caught:
        shard_all(root, tmp_path / "shards", skip_bad=True)
    assert_one_line_naming(caught.value, damaged, bad.problem)


@pytest.mark.parametrize("name", ["wrong-size-png", "missing-png", "object-without-mask"])
def test_readers_refuse_bad_annotations_when_reading_boxes(shared_data: Path, tmp_path: Path, name: str) -> None:
    root = short_davis(shared_data, tmp_path)
    damaged = case(name).damage(root)
    assert len(list(read_videos("ref-davis17", root, "valid", with_boxes=False))) == 2  # masks are not read: no error yet
    with pytest.raises(DataError) as caught:
        list(read_videos("ref-davis17", root, "valid", with_boxes=True))
    assert_one_line_naming(caught.value, damaged, case(name).problem)


def files_under(folder: Path) -> list[tuple[str, int]]:
    return sorted((str(path), path.stat().st_size) for path in folder.rglob("*"))


@pytest.mark.parametrize("bad", PER_VIDEO, ids=lambda bad: bad.name)
def test_check_video_refuses_the_bad_video_as_writing_it_would_and_writes_nothing(shared_data: Path, tmp_path: Path, bad: BadInput) -> None:
    root = short_davis(shared_data, tmp_path)
    damaged = bad.damage(root)
    before = files_under(tmp_path)
    videos = {video.video_id: video for video in shard_videos("ref-davis17", root, "valid")}
    check_video(videos["blackswan"])
    with pytest.raises(DataError) as caught:
        check_video(videos[BAD_VIDEO])
    assert_one_line_naming(caught.value, damaged, bad.problem)
    assert files_under(tmp_path) == before


def test_shard_refusals_are_one_per_bad_video_in_order(shared_data: Path, tmp_path: Path) -> None:
    root = short_davis(shared_data, tmp_path)
    first, second = remove_png(root, "blackswan", index=1), empty_jpeg(root, BAD_VIDEO, index=4)
    refusals = list(shard_refusals(shard_videos("ref-davis17", root, "valid")))
    assert len(refusals) == 2
    assert_one_line_naming(refusals[0], first, "annotation missing")
    assert_one_line_naming(refusals[1], second, "unreadable image: empty file")


def test_a_video_id_that_cannot_name_a_shard_member_is_refused(shared_data: Path, tmp_path: Path) -> None:
    video = shard_videos("ref-davis17", short_davis(shared_data, tmp_path, ("blackswan",)), "valid")[0]
    with pytest.raises(DataError, match=r"^video 'black swan': id has characters not allowed in a shard member name$"):
        check_video(replace(video, video_id="black swan"))


def test_a_split_without_videos_is_refused_naming_the_root(shared_data: Path, tmp_path: Path) -> None:
    root = short_davis(shared_data, tmp_path, ())
    with pytest.raises(DataError, match=rf"^{re.escape(str(root))}: no videos for format ref-davis17, split valid$"):
        shard_videos("ref-davis17", root, "valid")


def test_a_video_cut_between_two_shards_is_left_out_of_both_and_listed_once(shared_data: Path, tmp_path: Path) -> None:
    root = short_davis(shared_data, tmp_path)
    damaged = empty_jpeg(root, BAD_VIDEO, index=5)  # in the video's last window
    settings = replace(SETTINGS, window=2, with_masks=False, shard_bytes=5 * 854 * 480 * 3 * 15 // 100)  # 5 frames a shard
    videos = list(read_videos("ref-davis17", root, "valid", with_boxes=False))
    holding = [{video.video_id for video, _, _ in plan.windows} for plan in plan_shards(videos, settings)]
    assert sum(BAD_VIDEO in videos for videos in holding) == 2  # the plan cuts the bad video between two shards
    records = shard_all(root, tmp_path / "shards", settings, skip_bad=True)
    assert [key for record in records for key in record["samples"]] == ["blackswan__00000", "blackswan__00002", "blackswan__00004"]
    rejected = [entry for record in records for entry in record["rejected"]]
    assert [entry["video"] for entry in rejected] == [BAD_VIDEO] and str(damaged) in rejected[0]["reason"]


def test_a_frame_that_does_not_decode_in_a_shard_is_a_data_error_naming_the_member(tmp_path: Path) -> None:
    sample = ShardSample("video__00000", {}, frames=[b"not a jpeg"], shard=tmp_path / "shard-000000.tar")
    with pytest.raises(DataError, match=r"shard-000000\.tar: member video__00000\.0000\.jpg does not decode"):
        sample.frame(0)


# ---------------------------------------------------------------------------------------------- shards behind their manifests
@pytest.fixture(scope="module")
def embedded(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short copy of two videos sharded (training shards, 128 pixels) and embedded with the tiny SAM, with manifests."""
    work = tmp_path_factory.mktemp("embedded")
    root = short_davis(shared_data, work, frames=8)
    frames_dir, embeddings_dir = work / "shards/valid", work / "embeddings/valid"
    records = shard_all(root, frames_dir, ShardSettings(window=4, max_side=128))
    write_manifest(frames_dir / MANIFEST, [{c: r[c] for c in MANIFEST_COLUMNS} for r in records], {"stage": "shard"})
    embeddings_dir.mkdir(parents=True)
    sam = FrozenSam.from_name("tiny", seed=0)
    embedded = [embed_shard(sam, frames_dir / r["shard"], r["sha256"], embeddings_dir, 8)[0] for r in records]
    metadata = {"stage": "embed", "identity": embedded[0]["identity"], "frames_manifest": {"sha256": sha256_file(frames_dir / MANIFEST)}}
    write_manifest(embeddings_dir / MANIFEST, [{c: r[c] for c in MANIFEST_COLUMNS} for r in embedded], metadata)
    return work


def pairs_of(work: Path) -> list[ShardPair]:
    data = DataConfig(format="ref-davis17", shards=str(work / "shards"), embeddings=str(work / "embeddings"))
    return shard_pairs(data, "valid", FrozenSam.from_name("tiny", seed=0))


@pytest.fixture
def copy(embedded: Path, tmp_path: Path) -> Path:
    shutil.copytree(embedded, tmp_path / "work")
    return tmp_path / "work"


def test_intact_shards_pass(copy: Path) -> None:
    assert [pair.frames.name for pair in pairs_of(copy)] == ["shard-000000.tar"]


RESIZED = r"\d+ bytes, not \d+; "
CHANGED = r"sha256 \w+\.\.\., not \w+\.\.\."


@pytest.mark.parametrize(
    "stage,damage,differences,rerun",
    [
        ("shards", partial(cut_shard, samples=2), rf"\({RESIZED}{CHANGED}; 2 samples, not 4\)", "shard"),
        ("shards", edit_shard, rf"\(({RESIZED})?{CHANGED}\)", "shard"),  # the size may stay a multiple of 512 bytes
        ("embeddings", partial(cut_shard, samples=3), rf"\({RESIZED}{CHANGED}; 3 samples, not 4\)", "embed"),
    ],
    ids=["frames-cut-at-a-member", "frames-edited-after-embedding", "embeddings-cut-at-a-member"],
)
def test_a_shard_that_differs_from_its_manifest_is_refused_where_training_reads_it(
    copy: Path, stage: str, damage: Callable[[Path], Path], differences: str, rerun: str
) -> None:
    shard = damage(copy / stage / "valid/shard-000000.tar")
    with pytest.raises(DataError) as caught:
        pairs_of(copy)
    assert_one_line_naming(caught.value, shard, f"differs from its manifest row {differences}.*re-run pipelines/{rerun}\\.py")


def test_a_shard_listed_but_missing_is_refused(tmp_path: Path) -> None:
    row = {"shard": "shard-000000.tar", "samples": ["v__00000"], "n_samples": 1, "bytes": 10, "sha256": "0" * 64}
    with pytest.raises(DataError, match="shard-000000.tar: listed in its manifest, but missing; re-run pipelines/shard.py"):
        check_shard(tmp_path / "shard-000000.tar", row, rerun="pipelines/shard.py")
