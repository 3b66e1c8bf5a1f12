"""Fixtures of the groprompt.inference tests: small synthetic videos, the tiny configuration, a random predictor."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from groprompt.checkpoints import random_weights
from groprompt.config import ModelConfig, load_config
from groprompt.inference.predictor import Predictor, build_predictor

REPO = Path(__file__).resolve().parents[3]


class SyntheticVideos:
    """A red square moving over a grey background, as an MP4 file or a folder of frames."""

    @staticmethod
    def frame(t: int, height: int, width: int) -> np.ndarray:
        frame = np.full((height, width, 3), 40, np.uint8)
        x = (4 * t) % max(1, width - 16)
        frame[8:24, x : x + 16] = (230, 60, 60)
        return frame

    @classmethod
    def mp4(cls, path: Path, frames: int, height: int = 48, width: int = 64, fps: int = 10) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        with av.open(str(path), "w") as container:
            stream = container.add_stream("mpeg4", rate=fps)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for t in range(frames):
                container.mux(stream.encode(av.VideoFrame.from_ndarray(cls.frame(t, height, width), format="rgb24")))
            container.mux(stream.encode(None))
        return path

    @classmethod
    def folder(cls, folder: Path, frames: int, height: int = 40, width: int = 56, suffix: str = ".png") -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for t in range(frames):
            Image.fromarray(cls.frame(t, height, width)).save(folder / f"{t:03d}{suffix}")
        return folder


@pytest.fixture
def synthetic() -> type[SyntheticVideos]:
    return SyntheticVideos


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def model_config() -> ModelConfig:
    return load_config([REPO / "conf/tiny.yaml"]).model


@pytest.fixture(scope="session")
def predictor(model_config: ModelConfig) -> Predictor:
    torch.set_num_threads(1)
    return build_predictor(model_config, random_weights(0), segmentor="sam", seed=0)
