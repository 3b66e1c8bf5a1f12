"""Frame shards: round trip against the source, resizing, resumability, bad input, unsafe members."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from groprompt.data.formats import read_videos
from groprompt.data.shards import ShardSettings, plan_shards, read_shard, write_shard
from groprompt.errors import DataError
from tests.helpers import image_member_reads, make_frame_shards, mini_davis


def shard_all(root: Path, out: Path, settings: ShardSettings, skip_bad: bool = False) -> list[dict]:
    out.mkdir(exist_ok=True)
    videos = list(read_videos("ref-davis17", root, "valid", with_boxes=False))
    return [write_shard(plan, out, settings, skip_bad=skip_bad) for plan in plan_shards(videos, settings)]


def test_round_trip_reproduces_frames_boxes_expressions_and_masks(shared_data: Path, tmp_path: Path) -> None:
    root = mini_davis(shared_data, tmp_path)
    settings = ShardSettings(window=20, with_masks=True, shard_bytes=3 * 2**20)
    records = shard_all(root, tmp_path / "shards", settings)
    assert len(records) > 1  # the size target splits the data
    source = {video.video_id: video for video in read_videos("ref-davis17", root, "valid", with_boxes=True)}
    seen_frames = {video_id: 0 for video_id in source}
    for record in records:
        samples = list(read_shard(tmp_path / "shards" / record["shard"]))
        assert [s.key for s in samples] == record["samples"]
        for sample in samples:
            video = source[sample.meta["video_id"]]
            start = sample.meta["start"]
            assert sample.meta["expressions"] == [
                {"exp_id": e.exp_id, "text": e.text, "obj_id": e.obj_id, "kind": e.kind} for e in video.expressions
            ]
            for i, name in enumerate(sample.meta["frame_names"]):
                t = start + i
                assert name == video.frame_names[t]
                assert np.array_equal(sample.frame(i), video.frames.read(t))
                assert np.array_equal(sample.mask(i), video.masks.read(t))
                box = sample.meta["boxes"]["1"][i]
                assert (None if box is None else tuple(box)) == video.boxes[1][t]
            seen_frames[video.video_id] += len(sample.meta["frame_names"])
    assert seen_frames == {video_id: len(video.frame_names) for video_id, video in source.items()}


def test_training_shards_carry_no_masks_and_cap_the_frame_size(shared_data: Path, tmp_path: Path) -> None:
    root = mini_davis(shared_data, tmp_path, ("blackswan",))
    records = shard_all(root, tmp_path / "shards", ShardSettings(window=10, max_side=256, with_masks=False))
    with tarfile.open(tmp_path / "shards" / records[0]["shard"]) as tar:
        names = tar.getnames()
    assert names and not any(name.endswith(".png") for name in names)
    sample = next(read_shard(tmp_path / "shards" / records[0]["shard"]))
    frame = sample.frame(0)
    assert frame.shape == (144, 256, 3) and (sample.meta["stored_height"], sample.meta["stored_width"]) == (144, 256)
    source = next(read_videos("ref-davis17", root, "valid", with_boxes=False)).frames.read(0)
    resized = np.asarray(Image.fromarray(source).resize((256, 144), Image.BILINEAR), dtype=np.float32)
    assert np.abs(frame.astype(np.float32) - resized).mean() < 4  # JPEG quality 90
    assert sample.meta["boxes"]["1"][0] is not None  # boxes stay in original pixels for training
    assert sample.masks == []


def test_rerun_reuses_verified_shards_and_redoes_the_rest(shared_data: Path, tmp_path: Path) -> None:
    root = mini_davis(shared_data, tmp_path)
    settings = ShardSettings(window=25, shard_bytes=2 * 2**20)
    out = tmp_path / "shards"
    clean = shard_all(root, out, settings)
    assert len(clean) >= 3
    stamps = {r["shard"]: (out / r["shard"]).stat().st_mtime_ns for r in clean}
    (out / clean[0]["shard"]).unlink()  # interrupted before this one was written
    with open(out / clean[1]["shard"], "r+b") as handle:  # a damaged shard does not verify
        handle.truncate(1000)
    again = shard_all(root, out, settings)
    assert again == clean
    for record in clean[2:]:
        assert (out / record["shard"]).stat().st_mtime_ns == stamps[record["shard"]]
    assert not list(out.glob(".*tmp"))


def test_bad_frame_is_an_error_naming_it_or_a_rejected_video(shared_data: Path, tmp_path: Path) -> None:
    root = mini_davis(shared_data, tmp_path)
    broken = root / "valid/JPEGImages/libby/00003.jpg"
    broken.write_bytes(b"not a jpeg")
    settings = ShardSettings(window=100, max_side=400)  # resizing forces a decode of every frame
    with pytest.raises(DataError, match="00003.jpg"):
        shard_all(root, tmp_path / "strict", settings)
    assert not list((tmp_path / "strict").glob("*.tar"))
    records = shard_all(root, tmp_path / "lenient", settings, skip_bad=True)
    rejected = [entry for record in records for entry in record["rejected"]]
    assert [entry["video"] for entry in rejected] == ["libby"] and "00003.jpg" in rejected[0]["reason"]
    keys = [key for record in records for key in record["samples"]]
    assert keys and all(key.startswith("blackswan") for key in keys)


def write_tar(path: Path, members: list[tarfile.TarInfo]) -> None:
    with tarfile.open(path, "w") as tar:
        for info in members:
            tar.addfile(info, io.BytesIO(b"{}") if info.isreg() else None)


@pytest.mark.parametrize("name", ["../evil.json", "/etc/evil.json", "dir/key.json", "key"])
def test_unsafe_member_names_are_refused(tmp_path: Path, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.size = 2
    write_tar(tmp_path / "bad.tar", [info])
    with pytest.raises(DataError, match="refusing member"):
        list(read_shard(tmp_path / "bad.tar"))


def test_links_are_refused(tmp_path: Path) -> None:
    link = tarfile.TarInfo("key.json")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    write_tar(tmp_path / "bad.tar", [link])
    with pytest.raises(DataError, match="refusing member"):
        list(read_shard(tmp_path / "bad.tar"))


def test_long_videos_split_into_windows(shared_data: Path, tmp_path: Path) -> None:
    root = mini_davis(shared_data, tmp_path, ("blackswan",))
    videos = list(read_videos("ref-davis17", root, "valid", with_boxes=False))
    plans = plan_shards(videos, ShardSettings(window=16))
    windows = [(start, end) for plan in plans for _, start, end in plan.windows]
    assert windows == [(0, 16), (16, 32), (32, 48), (48, 50)]


def test_images_are_read_only_for_the_samples_asked_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    records = make_frame_shards(tmp_path)
    shard = tmp_path / "frames" / records[0]["shard"]
    keys = list(records[0]["samples"])
    assert len(keys) > 1
    with tarfile.open(shard) as tar:
        wanted_members = sorted(n for n in tar.getnames() if n.startswith(f"{keys[-1]}.") and not n.endswith(".json"))
    assert wanted_members
    reads = image_member_reads(monkeypatch)
    samples = list(read_shard(shard, keys={keys[-1]}))
    assert sorted(reads) == wanted_members  # no other sample's frame bytes
    assert [s.key for s in samples] == keys  # every sample still comes, with its JSON
    assert all(s.frames == [] for s in samples[:-1])
    assert len(samples[-1].frames) == len(samples[-1].meta["frame_names"])
    assert samples[-1].frame(0).shape[-1] == 3
    reads.clear()
    list(read_shard(shard, with_images=False, keys={keys[-1]}))
    assert reads == []
