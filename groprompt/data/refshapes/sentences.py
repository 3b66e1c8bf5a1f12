"""RefShapes referring expressions: templated sentences of appearance, position and motion, each true and unique.

Every candidate description of an object is checked against the whole scene; only those that pick out exactly
that object are turned into words. Each expression carries its type tag (appearance, position, motion,
appearance+motion).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import numpy as np

from groprompt.data.records import Expression
from groprompt.data.refshapes.scene import ShapeObject
from groprompt.data.refshapes.spec import RefShapesSpec

POSITIONS = ("left", "right", "top", "bottom")
KINDS = ("appearance", "position", "motion", "appearance+motion")
POSITION_MARGIN = 0.15  # first-frame gap, as a fraction of the frame side, that makes a position clear

MOTION_PHRASES: dict[str, tuple[str, ...]] = {
    "left": ("moving left", "that moves to the left", "going left"),
    "right": ("moving right", "that moves to the right", "going right"),
    "up": ("moving up", "that moves upwards", "going up"),
    "down": ("moving down", "that moves downwards", "going down"),
    "still": ("that stays still", "that is not moving", "standing still"),
}
POSITION_TEMPLATES: dict[str, tuple[str, ...]] = {
    "left": ("the {noun} on the left", "the leftmost {noun}"),
    "right": ("the {noun} on the right", "the rightmost {noun}"),
    "top": ("the {noun} at the top", "the highest {noun}"),
    "bottom": ("the {noun} at the bottom", "the lowest {noun}"),
}
DIRECT_ATTRIBUTES = ("shape", "colour", "size", "motion")  # true of one object alone; a position is relative
# Which appearance attributes a noun phrase names ("the red circle" = colour + shape).
NOUN_ATTRIBUTES = (("shape",), ("colour",), ("colour", "shape"), ("size", "shape"), ("size", "colour"), ("size", "colour", "shape"))


@dataclass(frozen=True)
class _Description:
    """What a sentence says: appearance attributes plus at most one of a motion or a first-frame position."""

    shape: str | None = None
    colour: str | None = None
    size: str | None = None
    motion: str | None = None
    position: str | None = None

    @property
    def kind(self) -> str:
        """The type tag: position, motion, appearance+motion or appearance."""
        if self.position is not None:
            return "position"
        names_look = any(value is not None for value in (self.shape, self.colour, self.size))
        if self.motion is not None:
            return "appearance+motion" if names_look else "motion"
        return "appearance"


def sample_expressions(rng: np.random.Generator, objects: tuple[ShapeObject, ...], spec: RefShapesSpec) -> tuple[Expression, ...]:
    """At least two true, unique expressions per object (at most one per type); empty when impossible."""
    chosen: list[tuple[ShapeObject, _Description]] = []
    for obj in objects:
        valid = [d for d in _candidate_descriptions(obj) if _referents(d, objects, spec) == [obj]]
        picks = _pick_descriptions(rng, valid)
        if len(picks) < 2:
            return ()
        chosen += [(obj, d) for d in picks]
    return tuple(Expression(str(i), _sentence(rng, d), obj.obj_id, d.kind) for i, (obj, d) in enumerate(chosen))


def _candidate_descriptions(obj: ShapeObject) -> list[_Description]:
    """Every description the templates can make of ``obj``; each is checked for uniqueness afterwards."""
    nouns = [_Description(**{name: getattr(obj, name) for name in names}) for names in NOUN_ATTRIBUTES]
    generic = _Description()
    moving = [_Description(d.shape, d.colour, d.size, motion=obj.motion) for d in [generic, *nouns]]
    placed = [_Description(d.shape, d.colour, d.size, position=p) for d, p in product([generic, *nouns], POSITIONS)]
    return nouns + moving + placed


def _referents(description: _Description, objects: tuple[ShapeObject, ...], spec: RefShapesSpec) -> list[ShapeObject]:
    """The objects a description is true of; a position needs two candidates and a clear extreme."""
    candidates = [obj for obj in objects if all(getattr(description, name) in (None, getattr(obj, name)) for name in DIRECT_ATTRIBUTES)]
    if description.position is None:
        return candidates
    extreme = _clear_extreme(candidates, description.position, spec)
    return [] if extreme is None else [extreme]


def _clear_extreme(candidates: list[ShapeObject], position: str, spec: RefShapesSpec) -> ShapeObject | None:
    """The candidate furthest towards ``position``: by a clear margin in the first frame, and still in every frame."""
    if len(candidates) < 2:
        return None
    axis, sign = {"left": (0, 1), "right": (0, -1), "top": (1, 1), "bottom": (1, -1)}[position]

    def key(obj: ShapeObject, t: int) -> float:
        return sign * obj.centre(t)[axis]

    first, second, *_ = sorted(candidates, key=lambda obj: key(obj, 0))
    if key(second, 0) - key(first, 0) < POSITION_MARGIN * spec.size:
        return None
    others = [obj for obj in candidates if obj is not first]
    if any(key(first, t) >= key(obj, t) for obj in others for t in range(spec.frames)):
        return None
    return first


def _pick_descriptions(rng: np.random.Generator, valid: list[_Description]) -> list[_Description]:
    """One description per available type; a second of the same type when only one type is available."""
    by_kind = {kind: [d for d in valid if d.kind == kind] for kind in KINDS}
    kinds = [kind for kind in KINDS if by_kind[kind]]
    picks = [by_kind[kind][int(rng.integers(len(by_kind[kind])))] for kind in kinds]
    if len(kinds) == 1 and len(by_kind[kinds[0]]) > 1:
        rest = [d for d in by_kind[kinds[0]] if d != picks[0]]
        picks.append(rest[int(rng.integers(len(rest)))])
    return picks


def _sentence(rng: np.random.Generator, description: _Description) -> str:
    """The description in words, e.g. ``the large red circle moving left``."""
    head = description.shape or str(rng.choice(["object", "shape"]))
    noun = " ".join(word for word in (description.size, description.colour, head) if word)
    if description.position is not None:
        return str(rng.choice(POSITION_TEMPLATES[description.position])).format(noun=noun)
    if description.motion is not None:
        return f"the {noun} {rng.choice(MOTION_PHRASES[description.motion])}"
    return f"the {noun}"
