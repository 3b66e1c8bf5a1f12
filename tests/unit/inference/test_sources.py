"""groprompt.inference.sources: finding videos and streaming their frames."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from groprompt.errors import DataError
from groprompt.inference.sources import discover_videos, iter_frames, video_fps, video_source


def test_mp4_frames_stream_lazily(tmp_path: Path, synthetic) -> None:
    path = synthetic.mp4(tmp_path / "clip.mp4", frames=7)
    frames = iter_frames(video_source(path))
    assert inspect.isgenerator(frames)
    name, first = next(frames)
    assert name == "00000" and first.shape == (48, 64, 3) and first.dtype == np.uint8
    rest = list(frames)
    assert [n for n, _ in rest] == [f"{i:05d}" for i in range(1, 7)]
    assert np.abs(first.astype(int) - synthetic.frame(0, 48, 64)).mean() < 12  # lossy codec, same picture


def test_frame_folder_is_sorted_and_rgb(tmp_path: Path, synthetic) -> None:
    folder = synthetic.folder(tmp_path / "clip", frames=3, suffix=".jpg")
    Image.fromarray(np.zeros((40, 56), np.uint8)).save(folder / "003.png")  # greyscale becomes RGB
    (folder / "notes.txt").write_text("ignored")
    frames = list(iter_frames(folder))
    assert [n for n, _ in frames] == ["000", "001", "002", "003"]
    assert all(f.shape == (40, 56, 3) and f.dtype == np.uint8 for _, f in frames)


def test_unreadable_inputs_raise_data_error(tmp_path: Path, synthetic) -> None:
    (tmp_path / "bad.mp4").write_bytes(b"not a video at all" * 10)
    with pytest.raises(DataError, match="bad.mp4"):
        list(iter_frames(tmp_path / "bad.mp4"))
    with pytest.raises(DataError, match="not found"):
        list(iter_frames(tmp_path / "missing.mp4"))
    folder = synthetic.folder(tmp_path / "frames", frames=1)
    (folder / "001.png").write_bytes(b"broken")
    with pytest.raises(DataError, match="001.png"):
        list(iter_frames(folder))


def test_discover_videos_in_a_folder_a_list_and_paths(tmp_path: Path, synthetic) -> None:
    synthetic.mp4(tmp_path / "in" / "a.mp4", frames=2)
    synthetic.folder(tmp_path / "in" / "b", frames=2)
    (tmp_path / "in" / "readme.md").write_text("not a video")
    (tmp_path / "in" / "empty").mkdir()
    found = discover_videos(tmp_path / "in")
    assert [(v.name, v.kind) for v in found] == [("a", "container"), ("b", "folder")]
    (tmp_path / "list.txt").write_text("in/b\n# comment\n\nin/a.mp4\n")
    assert [v.name for v in discover_videos(tmp_path / "list.txt")] == ["b", "a"]
    assert [v.name for v in discover_videos(tmp_path / "in" / "b")] == ["b"]  # a frame folder is one video
    assert [v.name for v in discover_videos([tmp_path / "in" / "a.mp4"])] == ["a"]
    synthetic.mp4(tmp_path / "other" / "a.mp4", frames=1)
    with pytest.raises(DataError, match="share the names"):
        discover_videos([tmp_path / "in" / "a.mp4", tmp_path / "other" / "a.mp4"])


def test_video_fps_of_containers_and_folders(tmp_path: Path, synthetic) -> None:
    assert video_fps(video_source(synthetic.mp4(tmp_path / "clip.mp4", frames=2, fps=25))) == 25
    assert video_fps(video_source(synthetic.folder(tmp_path / "frames", frames=1))) == 10
    (tmp_path / "bad.mp4").write_bytes(b"garbage")
    assert video_fps(video_source(tmp_path / "bad.mp4"), default=7.0) == 7.0
