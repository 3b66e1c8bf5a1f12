"""The server submissions (Ref-YouTube-VOS, MeViS): read back from an evaluation's per-expression PNGs, the members
the split's meta expects (every frame of every expression of every video), and each benchmark's zip layout."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from groprompt.data.records import Video
from groprompt.files import Location, list_folder, location
from groprompt.mask_io import MEVIS_SUBMISSION, REF_YOUTUBE_VOS_SUBMISSION, SubmissionLayout, read_index_png


def submission_masks(png_dir: str | Path | Location) -> Iterator[tuple[str, str, str, np.ndarray]]:
    """(video, exp_id, frame, mask) of every ``<png_dir>/<video>/<exp_id>/<frame>.png`` (local or in object storage),
    sorted by name; what ``groprompt.mask_io.write_submission_zip`` takes."""
    for video, video_is_folder in list_folder(location(png_dir)):
        for expression, expression_is_folder in list_folder(video) if video_is_folder else []:
            for path, is_folder in list_folder(expression) if expression_is_folder else []:
                if not is_folder and path.suffix == ".png":
                    yield video.name, expression.name, path.stem, read_index_png(path) > 0


def submission_members(videos: Iterable[Video]) -> set[tuple[str, str, str]]:
    """(video, exp_id, frame) of every frame of every expression of ``videos`` (a split read from its meta)."""
    return {(video.video_id, e.exp_id, frame) for video in videos for e in video.expressions for frame in video.frame_names}


def submission_layout(format: str) -> SubmissionLayout:
    """The zip layout of the server that scores ``format`` (a ``groprompt.data.formats`` name): MeViS's for mevis,
    else Ref-YouTube-VOS's."""
    return MEVIS_SUBMISSION if format == "mevis" else REF_YOUTUBE_VOS_SUBMISSION
