"""groprompt.inference: streaming frame readers, query files, and per-video inference with a tiny random model."""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from groprompt.config import load_config
from groprompt.data.records import DataError
from groprompt.inference import (
    InputError,
    OutputOptions,
    Predictor,
    Query,
    build_predictor,
    discover_videos,
    frame_boxes,
    group_queries,
    infer_video,
    iter_frames,
    load_model_state,
    masks_path,
    read_queries,
    video_source,
)
from groprompt.outputs import read_index_png, rle_to_mask

REPO = Path(__file__).resolve().parents[2]


def synthetic_frame(t: int, height: int, width: int) -> np.ndarray:
    frame = np.full((height, width, 3), 40, np.uint8)
    x = (4 * t) % max(1, width - 16)
    frame[8:24, x : x + 16] = (230, 60, 60)
    return frame


def write_mp4(path: Path, frames: int, height: int = 48, width: int = 64, fps: int = 10) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for t in range(frames):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(synthetic_frame(t, height, width), format="rgb24")))
        container.mux(stream.encode(None))
    return path


def write_frame_folder(folder: Path, frames: int, height: int = 40, width: int = 56, suffix: str = ".png") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for t in range(frames):
        Image.fromarray(synthetic_frame(t, height, width)).save(folder / f"{t:03d}{suffix}")
    return folder


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    torch.set_num_threads(1)
    return build_predictor(load_config([REPO / "conf/tiny.yaml"]).model, state=None, segmentor="sam", seed=0)


@pytest.fixture(scope="module")
def model_config():  # noqa: ANN201
    return load_config([REPO / "conf/tiny.yaml"]).model


# ------------------------------------------------------------------------------------------- readers


def test_mp4_frames_stream_lazily(tmp_path: Path) -> None:
    path = write_mp4(tmp_path / "clip.mp4", frames=7)
    frames = iter_frames(video_source(path))
    assert inspect.isgenerator(frames)
    name, first = next(frames)
    assert name == "00000" and first.shape == (48, 64, 3) and first.dtype == np.uint8
    rest = list(frames)
    assert [n for n, _ in rest] == [f"{i:05d}" for i in range(1, 7)]
    assert np.abs(first.astype(int) - synthetic_frame(0, 48, 64)).mean() < 12  # lossy codec, same picture


def test_frame_folder_is_sorted_and_rgb(tmp_path: Path) -> None:
    folder = write_frame_folder(tmp_path / "clip", frames=3, suffix=".jpg")
    Image.fromarray(np.zeros((40, 56), np.uint8)).save(folder / "003.png")  # greyscale becomes RGB
    (folder / "notes.txt").write_text("ignored")
    frames = list(iter_frames(folder))
    assert [n for n, _ in frames] == ["000", "001", "002", "003"]
    assert all(f.shape == (40, 56, 3) and f.dtype == np.uint8 for _, f in frames)


def test_unreadable_inputs_raise_data_error(tmp_path: Path) -> None:
    (tmp_path / "bad.mp4").write_bytes(b"not a video at all" * 10)
    with pytest.raises(DataError, match="bad.mp4"):
        list(iter_frames(tmp_path / "bad.mp4"))
    with pytest.raises(DataError, match="not found"):
        list(iter_frames(tmp_path / "missing.mp4"))
    folder = write_frame_folder(tmp_path / "frames", frames=1)
    (folder / "001.png").write_bytes(b"broken")
    with pytest.raises(DataError, match="001.png"):
        list(iter_frames(folder))


def test_discover_videos_in_a_folder_a_list_and_paths(tmp_path: Path) -> None:
    write_mp4(tmp_path / "in" / "a.mp4", frames=2)
    write_frame_folder(tmp_path / "in" / "b", frames=2)
    (tmp_path / "in" / "readme.md").write_text("not a video")
    (tmp_path / "in" / "empty").mkdir()
    found = discover_videos(tmp_path / "in")
    assert [(v.name, v.kind) for v in found] == [("a", "container"), ("b", "folder")]
    (tmp_path / "list.txt").write_text("in/b\n# comment\n\nin/a.mp4\n")
    assert [v.name for v in discover_videos(tmp_path / "list.txt")] == ["b", "a"]
    assert [v.name for v in discover_videos(tmp_path / "in" / "b")] == ["b"]  # a frame folder is one video
    assert [v.name for v in discover_videos([tmp_path / "in" / "a.mp4"])] == ["a"]
    write_mp4(tmp_path / "other" / "a.mp4", frames=1)
    with pytest.raises(DataError, match="share the names"):
        discover_videos([tmp_path / "in" / "a.mp4", tmp_path / "other" / "a.mp4"])


# ------------------------------------------------------------------------------------------- queries


def test_csv_queries_with_empty_query_error(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text('video,query\na,the red square\na,"a dog, running"\nb,  \nb,the cat\n,orphan\n')
    queries, errors = read_queries(path)
    assert queries == [Query("a", "the red square", "0"), Query("a", "a dog, running", "1"), Query("b", "the cat", "0")]
    assert [(e.video, e.query) for e in errors] == [("b", ""), ("", "orphan")]
    assert "empty query" in errors[0].reason and "line 4" in errors[0].reason


def test_jsonl_queries_and_malformed_lines(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    lines = [{"video": "a", "query": "left one"}, {"video": "a", "query": ""}, {"video": "b", "query": "x", "exp_id": "7"}]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n{broken\n\n[1]\n")
    queries, errors = read_queries(path)
    assert queries == [Query("a", "left one", "0"), Query("b", "x", "7")]
    assert sorted(e.reason.split(": ", 1)[1][:12] for e in errors) == ["empty query", "expected an ", "not JSON (Ex"]


def test_queries_file_without_columns_or_missing(tmp_path: Path) -> None:
    (tmp_path / "q.csv").write_text("clip,sentence\na,b\n")
    with pytest.raises(DataError, match="video,query"):
        read_queries(tmp_path / "q.csv")
    with pytest.raises(DataError, match="not found"):
        read_queries(tmp_path / "nope.csv")


def test_group_queries_reports_missing_videos(tmp_path: Path) -> None:
    videos = [video_source(tmp_path / "a.mp4"), video_source(tmp_path / "b.mp4"), video_source(tmp_path / "c.mp4")]
    queries = [Query("b", "one", "0"), Query("zz", "lost", "0"), Query("a", "two", "0"), Query("b", "three", "1")]
    grouped, errors = group_queries(queries, videos)
    assert [(v.name, [q.query for q in qs]) for v, qs in grouped] == [("a", ["two"]), ("b", ["one", "three"])]
    assert errors == [InputError("zz", "lost", "video not found among the inputs")]


def test_frame_boxes_are_clipped_pixels() -> None:
    boxes = frame_boxes(torch.tensor([[0.5, 0.5, 0.5, 0.5], [0.95, 0.1, 0.3, 0.4]]), height=40, width=100)
    np.testing.assert_allclose(boxes, [[25, 10, 75, 30], [80, 0, 100, 12]], atol=1e-4)


# ------------------------------------------------------------------------------------------- one video


def test_infer_video_outputs(tmp_path: Path, predictor: Predictor, model_config) -> None:  # noqa: ANN001
    source = video_source(write_mp4(tmp_path / "clip.mp4", frames=9, height=48, width=64))
    queries = [Query("clip", "the red square", "0"), Query("clip", "the background", "1"), Query("clip", "something else", "2")]
    result = infer_video(predictor, source, queries, tmp_path / "out", model_config, OutputOptions(png=True, overlay="gif", encode_batch=4))
    assert (result.status, result.n_frames, result.rows, result.errors) == ("done", 9, 27, [])

    table = pq.read_table(result.parquet).to_pylist()
    assert len(table) == 9 * 3
    assert {(r["exp_id"], r["frame_index"]) for r in table} == {(q.exp_id, t) for q in queries for t in range(9)}
    for row in table:
        assert rle_to_mask(row["rle"]).shape == (48, 64)
        x0, y0, x1, y1 = row["box"]
        assert 0 <= x0 <= x1 <= 64 and 0 <= y0 <= y1 <= 48
        assert 0 < row["score"] <= 1
    pngs = sorted((tmp_path / "out" / "png" / "clip" / "1").glob("*.png"))
    assert [p.stem for p in pngs] == [f"{t:05d}" for t in range(9)]
    first = next(r for r in table if r["exp_id"] == "1" and r["frame_index"] == 0)
    np.testing.assert_array_equal(read_index_png(pngs[0]) == 1, rle_to_mask(first["rle"]))
    assert len(result.overlays) == 3
    for path in result.overlays:
        with av.open(path) as gif:
            assert sum(1 for _ in gif.decode(video=0)) == 9


def test_infer_video_is_online(tmp_path: Path, predictor: Predictor, model_config) -> None:  # noqa: ANN001
    """Frame t's prediction does not depend on later frames: a 4-frame prefix gives the same first 4 frames."""
    folder = write_frame_folder(tmp_path / "long", frames=6)
    short = write_frame_folder(tmp_path / "short", frames=4)
    queries = [Query("x", "the red square", "0")]
    full = infer_video(predictor, video_source(folder), queries, tmp_path / "o1", model_config)
    prefix = infer_video(predictor, video_source(short), queries, tmp_path / "o2", model_config)
    full_rows = pq.read_table(full.parquet).to_pylist()[:4]
    prefix_rows = pq.read_table(prefix.parquet).to_pylist()
    for a, b in zip(full_rows, prefix_rows):
        np.testing.assert_allclose(a["box"], b["box"], atol=1e-4)
        assert a["rle"] == b["rle"]


def test_box_segmentor_fills_the_box(tmp_path: Path, model_config) -> None:  # noqa: ANN001
    boxer = build_predictor(model_config, state=None, segmentor="box", seed=1)
    source = video_source(write_frame_folder(tmp_path / "v", frames=2))
    result = infer_video(boxer, source, [Query("v", "the red square", "0")], tmp_path / "out", model_config)
    for row in pq.read_table(result.parquet).to_pylist():
        mask = rle_to_mask(row["rle"])
        x0, y0, x1, y1 = row["box"]
        ys, xs = np.nonzero(mask)
        if len(xs):
            assert xs.min() >= np.floor(x0) and xs.max() < np.ceil(x1) and ys.min() >= np.floor(y0) and ys.max() < np.ceil(y1)


def test_corrupt_video_fails_with_a_reason_per_query(tmp_path: Path, predictor: Predictor, model_config) -> None:  # noqa: ANN001
    (tmp_path / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    queries = [Query("bad", "one", "0"), Query("bad", "two", "1")]
    result = infer_video(predictor, video_source(tmp_path / "bad.mp4"), queries, tmp_path / "out", model_config, OutputOptions(overlay="mp4"), log=lambda m: None)
    assert result.status == "failed" and result.rows == 0 and result.overlays == []
    assert [(e.video, e.query) for e in result.errors] == [("bad", "one"), ("bad", "two")]
    assert "bad.mp4" in result.errors[0].reason
    assert not masks_path(tmp_path / "out", "bad").exists()
    assert not list((tmp_path / "out").rglob("*.mp4")) and not list((tmp_path / "out").rglob("*.tmp"))


def test_empty_frame_folder_fails(tmp_path: Path, predictor: Predictor, model_config) -> None:  # noqa: ANN001
    (tmp_path / "empty").mkdir()
    result = infer_video(predictor, video_source(tmp_path / "empty"), [Query("empty", "q", "0")], tmp_path / "out", model_config, log=lambda m: None)
    assert result.status == "failed" and "no frames" in result.errors[0].reason


def test_second_run_skips_a_finished_video(tmp_path: Path, predictor: Predictor, model_config) -> None:  # noqa: ANN001
    source = video_source(write_mp4(tmp_path / "clip.mp4", frames=3))
    queries = [Query("clip", "the red square", "0")]
    first = infer_video(predictor, source, queries, tmp_path / "out", model_config)
    stamp = Path(first.parquet).stat().st_mtime_ns
    again = infer_video(predictor, source, queries, tmp_path / "out", model_config)
    assert (again.status, again.rows, again.n_frames) == ("skipped", 3, 3)
    assert Path(first.parquet).stat().st_mtime_ns == stamp
    changed = infer_video(predictor, source, [*queries, Query("clip", "new one", "1")], tmp_path / "out", model_config)
    assert (changed.status, changed.rows) == ("done", 6)  # other queries: recomputed
    Path(first.parquet).write_bytes(b"truncated")  # a damaged output does not verify
    assert infer_video(predictor, source, queries, tmp_path / "out", model_config).status == "done"


def test_load_model_state_from_folder_and_file(tmp_path: Path, predictor: Predictor, model_config) -> None:  # noqa: ANN001
    from groprompt.training import save_checkpoint

    state = predictor.model.state_dict()
    (tmp_path / "ckpt").mkdir()
    save_checkpoint(tmp_path / "ckpt", {"model": state, "epoch": 3})
    loaded, logged, model_id = load_model_state(tmp_path / "ckpt")
    assert logged is None and len(model_id) == 64 and loaded.keys() == state.keys()
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "bare.pt")
    loaded, _, _ = load_model_state(tmp_path / "bare.pt")
    rebuilt = build_predictor(model_config, loaded, "box", seed=5)
    assert all(torch.equal(a, b) for a, b in zip(rebuilt.model.state_dict().values(), state.values()))
    with pytest.raises(FileNotFoundError):
        load_model_state(tmp_path / "nothing")
