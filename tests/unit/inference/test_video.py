"""groprompt.inference.video: per-video inference with a tiny random model, its outputs, failures and resumption."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from groprompt.errors import ConfigError
from groprompt.inference.predictor import Predictor
from groprompt.inference.queries import Query
from groprompt.inference.sources import video_source
from groprompt.inference.video import OutputOptions, frame_boxes, infer_video, masks_path
from groprompt.outputs import read_index_png, rle_to_mask


def test_frame_boxes_are_clipped_pixels() -> None:
    boxes = frame_boxes(torch.tensor([[0.5, 0.5, 0.5, 0.5], [0.95, 0.1, 0.3, 0.4]]), height=40, width=100)
    np.testing.assert_allclose(boxes, [[25, 10, 75, 30], [80, 0, 100, 12]], atol=1e-4)


def test_output_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="overlay"):
        OutputOptions(overlay="avi")
    with pytest.raises(ConfigError, match="encode_batch"):
        OutputOptions(encode_batch=0)


def test_infer_video_outputs(tmp_path: Path, predictor: Predictor, model_config, synthetic) -> None:
    source = video_source(synthetic.mp4(tmp_path / "clip.mp4", frames=9, height=48, width=64))
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


def test_infer_video_is_online(tmp_path: Path, predictor: Predictor, model_config, synthetic) -> None:
    """Frame t's prediction does not depend on later frames: a 4-frame prefix gives the same first 4 frames."""
    folder = synthetic.folder(tmp_path / "long", frames=6)
    short = synthetic.folder(tmp_path / "short", frames=4)
    queries = [Query("x", "the red square", "0")]
    full = infer_video(predictor, video_source(folder), queries, tmp_path / "o1", model_config)
    prefix = infer_video(predictor, video_source(short), queries, tmp_path / "o2", model_config)
    full_rows = pq.read_table(full.parquet).to_pylist()[:4]
    prefix_rows = pq.read_table(prefix.parquet).to_pylist()
    for a, b in zip(full_rows, prefix_rows):
        np.testing.assert_allclose(a["box"], b["box"], atol=1e-4)
        assert a["rle"] == b["rle"]


def test_corrupt_video_fails_with_a_reason_per_query(tmp_path: Path, predictor: Predictor, model_config) -> None:
    (tmp_path / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    queries = [Query("bad", "one", "0"), Query("bad", "two", "1")]
    result = infer_video(
        predictor,
        video_source(tmp_path / "bad.mp4"),
        queries,
        tmp_path / "out",
        model_config,
        OutputOptions(overlay="mp4"),
        log=lambda m: None,
    )
    assert result.status == "failed" and result.rows == 0 and result.overlays == []
    assert [(e.video, e.query) for e in result.errors] == [("bad", "one"), ("bad", "two")]
    assert "bad.mp4" in result.errors[0].reason
    assert not masks_path(tmp_path / "out", "bad").exists()
    assert not list((tmp_path / "out").rglob("*.mp4")) and not list((tmp_path / "out").rglob("*.tmp"))


def test_empty_frame_folder_fails(tmp_path: Path, predictor: Predictor, model_config) -> None:
    (tmp_path / "empty").mkdir()
    result = infer_video(
        predictor, video_source(tmp_path / "empty"), [Query("empty", "q", "0")], tmp_path / "out", model_config, log=lambda m: None
    )
    assert result.status == "failed" and "no frames" in result.errors[0].reason


def test_second_run_skips_a_finished_video(tmp_path: Path, predictor: Predictor, model_config, synthetic) -> None:
    source = video_source(synthetic.mp4(tmp_path / "clip.mp4", frames=3))
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
