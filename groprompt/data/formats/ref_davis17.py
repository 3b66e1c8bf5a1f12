"""Ref-DAVIS17 after the usual (ReferFormer) preparation: the Ref-YouTube-VOS layout, split "valid".

    <root>/valid/JPEGImages/<video>/<frame>.jpg
    <root>/valid/Annotations/<video>/<frame>.png            DAVIS palette PNG, value = obj_id
    <root>/meta_expressions/valid/meta_expressions.json

The paper evaluates the Ref-YouTube-VOS model here, with no training of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from groprompt.data.formats.ref_youtube_vos import read_referformer_layout
from groprompt.data.records import Video


def read_ref_davis17(root: str | Path, split: str | None = None, with_boxes: bool = True) -> Iterator[Video]:
    """Ref-DAVIS17 videos (default split "valid")."""
    return read_referformer_layout(root, split, with_boxes, dataset="ref-davis17")
