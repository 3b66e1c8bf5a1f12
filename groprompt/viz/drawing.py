"""Overlays of masks and boxes on frames, captions (text and a colour legend above a frame), and overlay videos (MP4 or
animated GIF) written as a stream."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import av
import cv2
import numpy as np
from PIL import Image

from groprompt.files import Location, atomic_path, location
from groprompt.mask_io import davis_palette

Color = tuple[int, int, int]
MP4_CODEC = "libx264" if "libx264" in av.codecs_available else "mpeg4"
"""H.264 where this PyAV build has it (its wheels do), else MPEG-4 part 2."""
CAPTION_FONT = cv2.FONT_HERSHEY_SIMPLEX
CAPTION_TEXT: Color = (255, 255, 255)
CAPTION_BACKGROUND: Color = (0, 0, 0)


def default_colors(n: int) -> list[Color]:
    """The DAVIS palette's colours of ids 1..n, so overlays match the PNG masks."""
    palette = davis_palette()
    return [(palette[3 * i], palette[3 * i + 1], palette[3 * i + 2]) for i in range(1, n + 1)]


def overlay(
    frame: np.ndarray,
    masks: np.ndarray | None = None,
    boxes: np.ndarray | None = None,
    colors: Sequence[Color] | None = None,
    alpha: float = 0.5,
    thickness: int = 2,
) -> np.ndarray:
    """A copy of the RGB uint8 ``frame`` with masks tinted and boxes outlined; object i gets ``colors[i]``.

    ``masks`` is (H, W) or (N, H, W) binary; ``boxes`` is (4,) or (N, 4) xyxy pixels (exclusive right/bottom
    edge; a box with a NaN is not drawn); each mask pixel becomes ``(1 - alpha) * pixel + alpha * colour``.
    """
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB frame, got shape {frame.shape} dtype {frame.dtype}")
    masks = np.zeros((0, *frame.shape[:2]), bool) if masks is None else np.asarray(masks, bool)
    masks = masks.reshape(-1, *masks.shape[-2:])
    boxes = np.zeros((0, 4)) if boxes is None else np.asarray(boxes, np.float64).reshape(-1, 4)
    if masks.shape[1:] != frame.shape[:2]:
        raise ValueError(f"masks {masks.shape[1:]} do not match the frame {frame.shape[:2]}")
    colors = list(colors) if colors is not None else default_colors(max(len(masks), len(boxes)))
    if len(colors) < max(len(masks), len(boxes)):
        raise ValueError(f"{len(colors)} colours for {max(len(masks), len(boxes))} objects")
    out = frame.copy()
    for mask, color in zip(masks, colors):
        out[mask] = ((1 - alpha) * out[mask] + alpha * np.asarray(color, np.float64)).round().astype(np.uint8)
    for box, color in zip(boxes, colors):
        if not np.isfinite(box).all():
            continue
        x0, y0, x1, y1 = np.round(box).astype(int)
        cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), tuple(int(c) for c in color), thickness)
    return out


def wrapped_lines(text: str, width: int, scale: float) -> list[str]:
    """``text`` cut at spaces into lines no wider than ``width`` pixels at font ``scale`` (a longer word keeps its own
    line); at least one line, empty for empty text."""
    lines: list[str] = []
    for word in text.split():
        joined = f"{lines[-1]} {word}" if lines else word
        if lines and cv2.getTextSize(joined, CAPTION_FONT, scale, 1)[0][0] <= width:
            lines[-1] = joined
        else:
            lines.append(word)
    return lines or [""]


def captioned(frame: np.ndarray, text: str, legend: Sequence[tuple[str, Color]] = (), scale: float = 0.4) -> np.ndarray:
    """The RGB uint8 ``frame`` below a band that holds ``text`` (wrapped to the frame's width), then a legend line:
    a colour swatch before each label of ``legend`` ((label, colour) pairs). The band's height depends only on the
    text, the legend and the width, so that frames captioned alike stack into one video."""
    margin = 4
    (_, text_height), baseline = cv2.getTextSize("Ag", CAPTION_FONT, scale, 1)
    line_height = text_height + baseline + margin
    lines = wrapped_lines(text, frame.shape[1] - 2 * margin, scale)
    band = np.full((line_height * (len(lines) + bool(legend)) + margin, frame.shape[1], 3), CAPTION_BACKGROUND, np.uint8)
    for row, line in enumerate(lines):
        cv2.putText(band, line, (margin, (row + 1) * line_height - baseline), CAPTION_FONT, scale, CAPTION_TEXT, 1, cv2.LINE_AA)
    x, y = margin, (len(lines) + 1) * line_height - baseline
    for label, color in legend:
        cv2.rectangle(band, (x, y - text_height), (x + text_height, y), tuple(int(c) for c in color), cv2.FILLED)
        x += text_height + margin
        cv2.putText(band, label, (x, y), CAPTION_FONT, scale, CAPTION_TEXT, 1, cv2.LINE_AA)
        x += cv2.getTextSize(label, CAPTION_FONT, scale, 1)[0][0] + 3 * margin
    return np.concatenate([band, frame])


def write_video(path: str | Path | Location, frames: Iterable[np.ndarray], fps: int = 10) -> int:
    """Encode RGB uint8 frames of one size to ``path`` (``.mp4`` or ``.gif``), atomically; returns the count.

    Frames are encoded as they arrive, so a video never sits in memory whole. MP4 is ``MP4_CODEC`` in
    yuv420p (an odd width or height is padded by one edge pixel); GIF frames each get their own 256-colour
    palette. GIF delays are in hundredths of a second, so ``fps`` is rounded to that.
    """
    path = location(path)
    container_format = {".mp4": "mp4", ".gif": "gif"}.get(path.suffix.lower())
    if container_format is None:
        raise ValueError(f"{path}: expected a .mp4 or .gif file name")
    count = 0
    with atomic_path(path) as temporary, av.open(str(temporary), "w", format=container_format) as container:
        stream: av.video.stream.VideoStream | None = None
        shape: tuple[int, ...] = ()
        for frame in frames:
            if stream is None:
                shape = frame.shape
                stream = _add_stream(container, container_format, shape, fps)
            if frame.shape != shape or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
                raise ValueError(f"{path}: frame {count} is {frame.shape} {frame.dtype}, expected {shape} uint8")
            container.mux(stream.encode(_video_frame(frame, container_format)))
            count += 1
        if stream is None:
            raise ValueError(f"{path}: no frames to write")
        container.mux(stream.encode(None))
    return count


def _add_stream(
    container: av.container.OutputContainer, container_format: str, shape: tuple[int, ...], fps: int
) -> av.video.stream.VideoStream:
    if container_format == "gif":
        stream = container.add_stream("gif", rate=fps)
        stream.pix_fmt = "pal8"
    else:
        stream = container.add_stream(MP4_CODEC, rate=fps)
        stream.pix_fmt = "yuv420p"
    height, width = shape[:2]
    even = container_format == "mp4"
    stream.height, stream.width = (height + height % 2, width + width % 2) if even else (height, width)
    return stream


def _video_frame(frame: np.ndarray, container_format: str) -> av.VideoFrame:
    if container_format == "gif":
        quantized = Image.fromarray(frame).quantize(256, method=Image.Quantize.FASTOCTREE)
        palette = np.zeros((256, 4), np.uint8)
        rgb = np.asarray(quantized.getpalette() or [], np.uint8).reshape(-1, 3)[:256]
        palette[:, 0] = 255  # opaque; PyAV takes ARGB rows
        palette[: len(rgb), 1:] = rgb
        return av.VideoFrame.from_ndarray((np.asarray(quantized), palette), format="pal8")
    height, width = frame.shape[:2]
    padded = np.pad(frame, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
    return av.VideoFrame.from_ndarray(padded, format="rgb24")
