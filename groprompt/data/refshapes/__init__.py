"""RefShapes: a synthetic referring-video benchmark, written in the Ref-YouTube-VOS layout.

Videos show flat-coloured shapes moving on straight paths (``scene``); their expressions come from templates,
carry a type tag (appearance, position, motion, appearance+motion; in a share of the videos also multi-object, about a
group of objects, and leaves-frame, about an object that leaves the frame) and are checked to be true of, and unique
to, their target (``sentences``). ``make_video`` builds one video in memory (``video``); ``write_refshapes`` writes
a whole benchmark to disk (``writer``), from a ``RefShapesSpec`` (``spec``).
"""

from __future__ import annotations

from groprompt.data.refshapes.scene import COLOURS, MOTIONS, SHAPES, SIZES, ShapeObject
from groprompt.data.refshapes.sentences import KINDS, POSITIONS
from groprompt.data.refshapes.spec import RefShapesSpec
from groprompt.data.refshapes.video import SyntheticVideo, make_video, video_id
from groprompt.data.refshapes.writer import SPEC_FILE, split_assignment, write_refshapes

__all__ = [
    "COLOURS",
    "KINDS",
    "MOTIONS",
    "POSITIONS",
    "SHAPES",
    "SIZES",
    "SPEC_FILE",
    "RefShapesSpec",
    "ShapeObject",
    "SyntheticVideo",
    "make_video",
    "split_assignment",
    "video_id",
    "write_refshapes",
]
