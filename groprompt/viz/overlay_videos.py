"""Overlay videos written as a stream: ``groprompt.viz.drawing.write_video`` in a thread per file, fed frame by frame."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from groprompt.files import Location, location
from groprompt.viz.drawing import write_video

OVERLAY_FORMATS = ("gif", "mp4")
QUEUE_FRAMES = 4  # frames waiting for a writer: bounds memory while the encoder catches up
PUT_WAIT_S = 0.5  # how often a blocked ``put`` checks that its writer is still alive


class _Abort:
    """Tells a writer thread to discard its partial file."""


_END = None  # tells a writer thread that the video is complete


class OverlayWriter:
    """One overlay video encoded in a background thread, so that several are written at once as frames arrive.

    ``put`` each frame, then ``close`` (raises when the file could not be written) or ``abort`` (no file
    remains: ``write_video`` removes its temporary file)."""

    def __init__(self, path: str | Path | Location, fps: float) -> None:
        self.path = location(path)
        self.error: BaseException | None = None
        self._queue: queue.Queue[np.ndarray | _Abort | None] = queue.Queue(maxsize=QUEUE_FRAMES)
        self._thread = threading.Thread(target=self._write, args=(max(1, round(fps)),), daemon=True)
        self._thread.start()

    def _frames(self) -> Iterator[np.ndarray]:
        """The queued frames until the end marker; an abort marker raises inside ``write_video``."""
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, _Abort):
                raise RuntimeError("aborted")
            yield item

    def _write(self, fps: int) -> None:
        try:
            write_video(self.path, self._frames(), fps=fps)
        except BaseException as error:  # noqa: BLE001 - reported by close()
            self.error = error

    def put(self, frame: np.ndarray) -> None:
        """Queue one RGB uint8 frame; waits while the queue is full, raises when the writer has stopped."""
        if not self._offer(frame):
            raise RuntimeError(f"{self.path}: overlay writer stopped: {self.error!r}")

    def close(self) -> None:
        """Finish the file; raises when writing it failed."""
        self._stop(_END)
        if self.error is not None:
            raise RuntimeError(f"{self.path}: overlay writing failed: {self.error!r}") from self.error

    def abort(self) -> None:
        """Stop and discard the partial file; never raises."""
        self._stop(_Abort())

    def _stop(self, marker: _Abort | None) -> None:
        self._offer(marker)
        self._thread.join()

    def _offer(self, item: np.ndarray | _Abort | None) -> bool:
        """Queue ``item`` while the writer thread runs; False when it has stopped."""
        while self._thread.is_alive():
            try:
                self._queue.put(item, timeout=PUT_WAIT_S)
                return True
            except queue.Full:
                continue
        return False
