"""groprompt.viz.overlay_videos: overlay videos written from a background thread."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from groprompt.viz.overlay_videos import OverlayWriter


def frames(count: int, height: int = 24, width: int = 32) -> list[np.ndarray]:
    return [np.full((height, width, 3), (20 * t) % 256, np.uint8) for t in range(count)]


@pytest.mark.parametrize("fmt", ["gif", "mp4"])
def test_frames_put_are_written_on_close(tmp_path: Path, fmt: str) -> None:
    writer = OverlayWriter(tmp_path / "overlays" / f"0.{fmt}", fps=12.4)
    for frame in frames(10):  # more than the queue holds: put waits for the writer
        writer.put(frame)
    writer.close()
    with av.open(str(writer.path)) as video:
        assert sum(1 for _ in video.decode(video=0)) == 10
    assert [p.name for p in (tmp_path / "overlays").iterdir()] == [f"0.{fmt}"]


def test_abort_leaves_no_file(tmp_path: Path) -> None:
    writer = OverlayWriter(tmp_path / "0.gif", fps=10)
    for frame in frames(3):
        writer.put(frame)
    writer.abort()
    assert list(tmp_path.iterdir()) == []


def test_a_failed_writer_is_reported(tmp_path: Path) -> None:
    writer = OverlayWriter(tmp_path / "0.mp4", fps=10)
    writer.put(frames(1)[0])
    writer.put(frames(1, height=30)[0])  # a different size: write_video stops
    with pytest.raises(RuntimeError, match="overlay"):
        for frame in frames(20):
            writer.put(frame)
        writer.close()
    assert list(tmp_path.iterdir()) == []
