"""Overlays (pixel values), captions, and overlay videos (written, then read back with Pillow and PyAV)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from groprompt.viz.drawing import CAPTION_BACKGROUND, captioned, default_colors, overlay, wrapped_lines, write_video


def test_overlay_tints_the_mask_and_outlines_the_box() -> None:
    frame = np.full((40, 50, 3), 100, np.uint8)
    mask = np.zeros((40, 50), bool)
    mask[5:15, 5:20] = True
    box = np.array([25, 10, 45, 30])
    out = overlay(frame, mask, box, colors=[(255, 0, 0)], alpha=0.5, thickness=1)
    assert out.dtype == np.uint8 and out.shape == frame.shape
    assert (frame == 100).all()  # the input is untouched
    assert (out[mask] == [178, 50, 50]).all()  # round(0.5 * 100 + 0.5 * 255) = 178 (half to even)
    border = np.zeros((40, 50), bool)
    border[10, 25:45] = border[29, 25:45] = border[10:30, 25] = border[10:30, 44] = True
    assert (out[border] == [255, 0, 0]).all()
    assert (out[~mask & ~border] == 100).all()  # box interior and the rest unchanged


def test_overlay_several_objects_take_default_colours() -> None:
    frame = np.zeros((10, 10, 3), np.uint8)
    masks = np.zeros((2, 10, 10), bool)
    masks[0, :5], masks[1, 5:] = True, True
    out = overlay(frame, masks, alpha=1.0)
    first, second = default_colors(2)
    assert (out[:5] == first).all() and (out[5:] == second).all() and first != second
    with pytest.raises(ValueError, match="colours"):
        overlay(frame, masks, colors=[(1, 2, 3)])
    with pytest.raises(ValueError, match="match"):
        overlay(frame, np.zeros((9, 10), bool))


def test_overlay_draws_each_box_in_its_colour_and_skips_a_nan_box() -> None:
    frame = np.zeros((30, 30, 3), np.uint8)
    boxes = np.array([[2, 2, 12, 12], [15, 15, 28, 28], [np.nan] * 4])
    out = overlay(frame, boxes=boxes, colors=[(255, 0, 0), (0, 255, 0), (0, 0, 255)], thickness=1)
    assert (out[2, 2:12] == [255, 0, 0]).all() and (out[2:12, 11] == [255, 0, 0]).all()
    assert (out[15, 15:28] == [0, 255, 0]).all() and (out[27, 15:28] == [0, 255, 0]).all()
    assert not (out == [0, 0, 255]).all(axis=2).any()


def test_caption_writes_the_text_and_legend_in_a_band_above_the_frame() -> None:
    frame = np.full((64, 120, 3), 100, np.uint8)
    legend = [("prediction", (255, 0, 0)), ("ground truth", (0, 255, 0))]
    with_text = captioned(frame, "the red square", legend)
    without_text = captioned(frame, "", legend)
    band = with_text.shape[0] - 64
    assert with_text.shape == without_text.shape and band > 0
    assert (with_text[band:] == frame).all() and (without_text[band:] == frame).all()  # the frame below is untouched
    assert (with_text[:band] != without_text[:band]).any()  # the sentence is written in the band
    assert ((without_text[:band] == (255, 0, 0)).all(axis=2)).any() and ((without_text[:band] == (0, 255, 0)).all(axis=2)).any()
    empty = captioned(frame, "")
    assert (empty[: empty.shape[0] - 64] == CAPTION_BACKGROUND).all()  # no text, no legend: an empty band


def test_long_text_wraps_to_the_width() -> None:
    words = "the small red square moving to the left of the big blue circle"
    lines = wrapped_lines(words, 100, 0.4)
    assert len(lines) > 1 and " ".join(lines) == words
    assert wrapped_lines("", 100, 0.4) == [""]
    frame = np.zeros((20, 100, 3), np.uint8)
    assert captioned(frame, words).shape[0] > captioned(frame, "short").shape[0]


def moving_square(n: int, height: int, width: int) -> Iterator[np.ndarray]:
    """A stream of smooth frames: a white square moving over a blue-to-red gradient."""
    gradient = np.zeros((height, width, 3), np.uint8)
    gradient[..., 0] = np.linspace(0, 255, width).astype(np.uint8)
    gradient[..., 2] = 255 - gradient[..., 0]
    for t in range(n):
        frame = gradient.copy()
        frame[10:20, 5 + 3 * t : 15 + 3 * t] = 255
        yield frame


def test_gif_is_written_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "overlay.gif"
    assert write_video(path, moving_square(6, 32, 48), fps=10) == 6
    with Image.open(path) as image:
        assert image.n_frames == 6 and image.size == (48, 32) and image.info["duration"] == 100
        image.seek(3)
        rgb = np.asarray(image.convert("RGB"), dtype=np.int32)
    expected = np.asarray(list(moving_square(6, 32, 48))[3], dtype=np.int32)
    assert np.abs(rgb - expected).mean() < 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["overlay.gif"]


@pytest.mark.parametrize("height, width", [(32, 48), (31, 47)])
def test_mp4_is_written_and_reads_back(tmp_path: Path, height: int, width: int) -> None:
    path = tmp_path / "overlay.mp4"
    assert write_video(path, moving_square(8, height, width), fps=8) == 8
    with av.open(str(path)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(frames) == 8
    assert frames[0].shape == (height + height % 2, width + width % 2, 3)  # yuv420p needs even sides
    expected = np.asarray(list(moving_square(8, height, width))[5], dtype=np.int32)
    assert np.abs(frames[5][:height, :width].astype(np.int32) - expected).mean() < 12


def test_write_video_errors_leave_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=".mp4 or .gif"):
        write_video(tmp_path / "x.avi", moving_square(2, 16, 16))
    with pytest.raises(ValueError, match="no frames"):
        write_video(tmp_path / "x.mp4", iter([]))
    mixed = [np.zeros((16, 16, 3), np.uint8), np.zeros((16, 18, 3), np.uint8)]
    with pytest.raises(ValueError, match="frame 1"):
        write_video(tmp_path / "x.gif", iter(mixed))
    assert list(tmp_path.iterdir()) == []
