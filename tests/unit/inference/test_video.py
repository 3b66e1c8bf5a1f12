"""groprompt.inference.video: per-video inference with a tiny random model, its outputs, failures and resumption."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from groprompt.checkpoints import random_weights
from groprompt.errors import ConfigError
from groprompt.inference.predictor import Predictor, build_predictor
from groprompt.inference.queries import Query
from groprompt.inference.sources import video_source
from groprompt.inference.video import OutputOptions, infer_video, masks_path
from groprompt.mask_io import read_index_png, rle_to_mask
from groprompt.models.prompts import frame_boxes


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


def filled(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """The union of xyxy boxes filled (a pixel whose centre lies inside), NaN rows left out: by hand."""
    mask = np.zeros((height, width), bool)
    ys, xs = np.mgrid[0:height, 0:width] + 0.5
    for x0, y0, x1, y1 in boxes[np.isfinite(boxes).all(axis=1)]:
        mask |= (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)
    return mask


@pytest.mark.parametrize("threshold", [0.0, 0.5, 1.0])
def test_the_set_mode_keeps_the_confident_boxes_and_unions_their_masks(tmp_path: Path, model_config, synthetic, threshold: float) -> None:
    """Every query box whose confidence reaches the threshold is kept (0: all of them; 1: none, an empty mask); the
    mask is the union of the kept boxes' masks (here the ``box`` segmentor: each box filled)."""
    config = replace(model_config, multi_object=True, set_score_threshold=threshold)
    predictor = build_predictor(config, random_weights(0), segmentor="box", seed=0)
    source = video_source(synthetic.mp4(tmp_path / "clip.mp4", frames=3, height=48, width=64))
    result = infer_video(predictor, source, [Query("clip", "the red square", "0")], tmp_path / "out", config)
    rows = pq.read_table(result.parquet).to_pylist()
    assert len(rows) == 3
    for row in rows:
        boxes, scores = np.array(row["boxes"], dtype=np.float64).reshape(-1, 4), np.array(row["scores"])
        queries = config.num_queries + int(config.propagate and row["frame_index"] > 0)  # and the previous frame's top query
        assert len(boxes) == {0.0: queries, 1.0: 0}.get(threshold, len(boxes))
        assert (scores >= threshold).all()
        np.testing.assert_array_equal(rle_to_mask(row["rle"]), filled(boxes, 48, 64))
        if len(boxes):
            np.testing.assert_allclose(row["box"], [*boxes[:, :2].min(0), *boxes[:, 2:].max(0)], atol=1e-4)
            assert row["score"] == pytest.approx(scores.max())
        else:
            assert np.isnan(row["box"]).all() and np.isnan(row["score"])
