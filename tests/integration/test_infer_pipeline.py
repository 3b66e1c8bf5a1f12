"""pipelines/infer.py through a real local Ray: two tiny videos, input errors recorded, a re-run skips everything."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from groprompt.config import load_config
from groprompt.data.manifest import read_manifest
from groprompt.files import Location, location, open_random, write_text_atomic
from groprompt.inference.sources import discover_videos
from groprompt.mask_io import rle_to_mask
from groprompt.stages.infer import format_summary, infer
from groprompt.viz.drawing import write_video
from pipelines.infer import main
from tests.helpers import upload_tree

REPO = Path(__file__).resolve().parents[2]


def moving_square(frames: int, height: int, width: int) -> list[np.ndarray]:
    """A red square moving over a grey background."""
    pictures = [np.full((height, width, 3), 40, np.uint8) for _ in range(frames)]
    for t, picture in enumerate(pictures):
        x = (4 * t) % max(1, width - 16)
        picture[8:24, x : x + 16] = (230, 60, 60)
    return pictures


def write_frame_folder(folder: Path, frames: int, height: int, width: int) -> None:
    folder.mkdir(parents=True)
    for t, picture in enumerate(moving_square(frames, height, width)):
        Image.fromarray(picture).save(folder / f"{t:03d}.png")


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_infer_pipeline_end_to_end_and_resume(local_ray: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    videos = tmp_path / "videos"
    write_video(videos / "clip.mp4", moving_square(5, height=48, width=64), fps=10)
    write_frame_folder(videos / "frames", frames=4, height=40, width=56)
    (videos / "broken.mp4").write_bytes(b"this is not an mp4 file" * 20)
    queries = tmp_path / "queries.csv"
    queries.write_text(
        "video,query\nclip,the red square\nclip,the grey background\nframes,the red square\n"
        "broken,anything\nnowhere,a missing video\nframes,   \n"
    )
    config = load_config([REPO / "conf/tiny.yaml"], ["model.sam=tiny"])
    out = tmp_path / "out"

    summary = infer(config, videos, queries, out, random_model=True, segmentor="sam", overlay="gif")
    assert (summary["videos"], summary["done"], summary["failed"], summary["frames"], summary["rows"]) == (3, 2, 1, 9, 5 * 2 + 4)
    assert summary["untrained"] is True
    assert json.loads((out / "summary.json").read_text()) == summary
    assert format_summary(summary).startswith("2 videos done, 0 skipped, 1 failed, 3 errors; 9 frames in ")

    clip = pq.read_table(out / "masks" / "clip.parquet").to_pylist()
    assert len(clip) == 10 and all(rle_to_mask(r["rle"]).shape == (48, 64) for r in clip)
    assert len(pq.read_table(out / "masks" / "frames.parquet")) == 4
    assert sorted(p.name for p in (out / "overlays" / "clip").iterdir()) == ["0.gif", "1.gif"]

    errors = {(r["video"], r["query"]): r["reason"] for r in pq.read_table(out / "errors.parquet").to_pylist()}
    assert set(errors) == {("broken", "anything"), ("nowhere", "a missing video"), ("frames", "")}
    assert "broken.mp4" in errors[("broken", "anything")] and "empty query" in errors[("frames", "")]

    rows, metadata = read_manifest(out / "manifest.parquet")
    assert [(r["video"], r["status"], r["n_frames"], r["rows"]) for r in rows] == [
        ("broken", "failed", 0, 0),
        ("clip", "done", 5, 10),
        ("frames", "done", 4, 4),
    ]
    assert metadata["model"] == "random:0" and metadata["options"]["overlay"] == "gif"

    stamp = (out / "masks" / "clip.parquet").stat().st_mtime_ns
    (videos / "broken.mp4").unlink()  # the re-run finds every remaining video done and starts no actor
    inputs = ["--config", str(REPO / "conf/tiny.yaml"), "--videos", str(videos), "--queries", str(queries), "--out", str(out)]
    capsys.readouterr()
    assert main([*inputs, "--random-model", "--overlay", "gif"]) == 1  # the refused queries are still in the file
    (incomplete,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("incomplete:")]
    assert incomplete.startswith("incomplete: 0 videos failed, 3 input errors in ")  # empty query, missing video, deleted video
    assert incomplete.endswith("errors.parquet; first: queries.csv line 7: empty query")
    rows, _ = read_manifest(out / "manifest.parquet")
    assert [(r["video"], r["status"]) for r in rows] == [("clip", "skipped"), ("frames", "skipped")]
    assert ("broken", "anything") in {(r["video"], r["query"]) for r in pq.read_table(out / "errors.parquet").to_pylist()}
    assert (out / "masks" / "clip.parquet").stat().st_mtime_ns == stamp

    capsys.readouterr()
    assert main([*inputs, "--checkpoint", str(tmp_path / "no-such-checkpoint")]) == 2  # a user error: one line, exit 2
    assert f"error: {tmp_path / 'no-such-checkpoint'}: checkpoint not found" in capsys.readouterr().err.splitlines()

    lost = tmp_path / "lost.csv"
    lost.write_text("video,query\nnowhere,a missing video\n")
    inputs = ["--config", str(REPO / "conf/tiny.yaml"), "--videos", str(videos), "--queries", str(lost), "--out", str(tmp_path / "lost")]
    assert main([*inputs, "--random-model"]) == 1  # nothing was processed: not a success
    assert [r["video"] for r in pq.read_table(tmp_path / "lost" / "errors.parquet").to_pylist()] == ["nowhere"]


def masks_of(table: Location) -> list[dict[str, object]]:
    with open_random(table) as handle:
        return pq.read_table(handle).to_pylist()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_infer_reads_videos_and_queries_from_a_bucket_and_writes_there_what_it_writes_on_disk(
    local_ray: None, bucket: str, tmp_path: Path
) -> None:
    """A prefix of MP4s and frame folders, a queries file and the outputs all in a bucket: the same masks, PNGs and
    overlays as the run on local disk, and a re-run skips every video; a WebDataset tar of videos in the bucket gives
    the same masks; a ``.txt`` list may name videos by URI."""
    videos = tmp_path / "videos"
    write_video(videos / "clip.mp4", moving_square(5, height=48, width=64), fps=10)
    write_frame_folder(videos / "frames", frames=4, height=40, width=56)
    queries = tmp_path / "inputs" / "queries.jsonl"
    queries.parent.mkdir()
    queries.write_text('{"video": "clip", "query": "the red square"}\n{"video": "frames", "query": "the red square"}\n')
    upload_tree(videos, f"{bucket}/archive/videos")
    upload_tree(queries.parent, f"{bucket}/archive")
    config = load_config([REPO / "conf/tiny.yaml"], ["model.sam=tiny"])
    options = {"random_model": True, "segmentor": "sam", "png": True, "overlay": "gif"}

    local = infer(config, videos, queries, tmp_path / "out", **options)
    remote = infer(config, f"{bucket}/archive/videos", f"{bucket}/archive/queries.jsonl", f"{bucket}/out", **options)
    assert (remote["done"], remote["frames"], remote["rows"]) == (local["done"], local["frames"], local["rows"]) == (2, 9, 9)
    out = location(bucket) / "out"
    for video in ("clip", "frames"):
        assert masks_of(out / "masks" / f"{video}.parquet") == masks_of(tmp_path / "out" / "masks" / f"{video}.parquet")
        assert (out / "overlays" / video / "0.gif").read_bytes() == (tmp_path / "out" / "overlays" / video / "0.gif").read_bytes()
    local_pngs = sorted(p.relative_to(tmp_path / "out" / "png").as_posix() for p in (tmp_path / "out" / "png").rglob("*.png"))
    assert len(local_pngs) == 9
    for name in local_pngs:
        assert (out / "png" / name).read_bytes() == (tmp_path / "out" / "png" / name).read_bytes()
    assert [r["status"] for r in read_manifest(out / "manifest.parquet")[0]] == ["done", "done"]

    again = infer(config, f"{bucket}/archive/videos", f"{bucket}/archive/queries.jsonl", f"{bucket}/out", **options)
    assert (again["done"], again["skipped"]) == (0, 2)

    (tmp_path / "tars").mkdir()
    write_video(tmp_path / "frames.mp4", moving_square(4, height=40, width=56), fps=10)
    with tarfile.open(tmp_path / "tars" / "videos-000000.tar", "w") as tar:  # WebDataset style: videos beside metadata
        for member in (videos / "clip.mp4", queries, tmp_path / "frames.mp4"):
            tar.add(member, arcname=member.name)
    upload_tree(tmp_path / "tars", f"{bucket}/tars")
    from_tar = infer(config, f"{bucket}/tars/videos-000000.tar", f"{bucket}/archive/queries.jsonl", f"{bucket}/from-tar", **options)
    assert (from_tar["done"], from_tar["errors"]) == (2, 0)  # two videos, as above: the same actors and threads
    clip = "from-tar/masks/clip.parquet"
    assert masks_of(location(bucket) / clip) == masks_of(tmp_path / "out" / "masks" / "clip.parquet")

    listed = location(bucket) / "archive" / "list.txt"
    listed_text = f"{bucket}/archive/videos/clip.mp4\nvideos/frames\n"
    write_text_atomic(listed, listed_text)
    assert [(s.name, s.path, s.kind) for s in discover_videos(str(listed))] == [
        ("clip", f"{bucket}/archive/videos/clip.mp4", "container"),
        ("frames", f"{bucket}/archive/videos/frames", "folder"),
    ]
