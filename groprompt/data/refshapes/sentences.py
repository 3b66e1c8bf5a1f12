"""RefShapes referring expressions: templated sentences of appearance, position and motion, each true and unique.

Every candidate description of an object is checked against the whole scene; only those that pick out exactly
that object are turned into words. Each expression carries its type tag (appearance, position, motion,
appearance+motion). Some videos also get a sentence about several objects (multi-object: "the two red circles",
true of exactly those objects, whose target is a group of them) and one about an object that leaves the frame
(leaves-frame: "the red circle that leaves the frame", the only one of its look that leaves while the others of that
look stay in view).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from itertools import product

import numpy as np

from groprompt.data.records import Expression
from groprompt.data.refshapes.scene import ShapeObject
from groprompt.data.refshapes.spec import RefShapesSpec

POSITIONS = ("left", "right", "top", "bottom")
MULTI_OBJECT = "multi-object"
LEAVES_FRAME = "leaves-frame"
KINDS = ("appearance", "position", "motion", "appearance+motion", MULTI_OBJECT, LEAVES_FRAME)
POSITION_MARGIN = 0.15  # first-frame gap, as a fraction of the frame side, that makes a position clear

MOTION_PHRASES: dict[str, tuple[str, ...]] = {
    "left": ("moving left", "that moves to the left", "going left"),
    "right": ("moving right", "that moves to the right", "going right"),
    "up": ("moving up", "that moves upwards", "going up"),
    "down": ("moving down", "that moves downwards", "going down"),
    "still": ("that stays still", "that is not moving", "standing still"),
}
PLURAL_VERBS = {"moves": "move", "stays": "stay", "is": "are"}  # turns a motion phrase about one object into one about several
LEAVING_PHRASES = ("that leaves the frame", "moving out of the frame", "that goes out of view")
COUNT_WORDS = {2: "two", 3: "three", 4: "four", 5: "five"}
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
    """What a sentence says: appearance attributes plus at most one of a motion, a first-frame position or leaving
    the frame."""

    shape: str | None = None
    colour: str | None = None
    size: str | None = None
    motion: str | None = None
    position: str | None = None
    leaves: bool = False

    @property
    def kind(self) -> str:
        """The type tag of a sentence about one object: leaves-frame, position, motion, appearance+motion or appearance."""
        if self.leaves:
            return LEAVES_FRAME
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


def sample_special_expressions(
    rng: np.random.Generator, objects: tuple[ShapeObject, ...], spec: RefShapesSpec, first_id: int, kinds: Collection[str]
) -> tuple[tuple[Expression, ...], dict[int, tuple[int, ...]]]:
    """One expression of each of ``kinds`` (multi-object, leaves-frame), each only where a true and unique one exists;
    ids count on from ``first_id``. Returns them and the groups they refer to (group id -> its object ids; the group is
    numbered after the objects)."""
    expressions: list[Expression] = []
    groups: dict[int, tuple[int, ...]] = {}
    if MULTI_OBJECT in kinds:
        options = _group_descriptions(objects, spec)
        if options:
            description, members = options[int(rng.integers(len(options)))]
            group = len(objects) + 1
            groups[group] = tuple(obj.obj_id for obj in members)
            expressions.append(Expression(str(first_id), _sentence(rng, description, len(members)), group, MULTI_OBJECT))
    if LEAVES_FRAME in kinds:
        leavers = [obj for obj in objects if _leaves(obj, spec)]
        options = [(obj, d) for obj in leavers for d in _leaving_descriptions(obj) if _referents(d, objects, spec) == [obj]]
        if options:
            obj, description = options[int(rng.integers(len(options)))]
            exp_id = str(first_id + len(expressions))
            expressions.append(Expression(exp_id, _sentence(rng, description), obj.obj_id, description.kind))
    return tuple(expressions), groups


def _noun_phrases(obj: ShapeObject) -> list[_Description]:
    """The generic noun phrase ("the object"), then one naming each attribute set of ``NOUN_ATTRIBUTES`` of ``obj``."""
    return [_Description(), *(_Description(**{name: getattr(obj, name) for name in names}) for names in NOUN_ATTRIBUTES)]


def _candidate_descriptions(obj: ShapeObject) -> list[_Description]:
    """Every single-object description the templates can make of ``obj`` (leaving the frame aside); each is checked
    for uniqueness afterwards."""
    phrases = _noun_phrases(obj)
    moving = [replace(d, motion=obj.motion) for d in phrases]
    placed = [replace(d, position=p) for d, p in product(phrases, POSITIONS)]
    return phrases[1:] + moving + placed


def _leaving_descriptions(obj: ShapeObject) -> list[_Description]:
    """Every description of ``obj`` as the one that leaves the frame; true only of an object that does."""
    return [replace(d, leaves=True) for d in _noun_phrases(obj)]


def _group_descriptions(objects: tuple[ShapeObject, ...], spec: RefShapesSpec) -> list[tuple[_Description, list[ShapeObject]]]:
    """Each description without a position (a position picks out one object) that is true of two or more of the
    objects but not of all, once, with the objects it is true of."""
    found: dict[_Description, list[ShapeObject]] = {}
    for obj in objects:
        for description in _candidate_descriptions(obj):
            if description.position is None and description not in found:
                referents = _referents(description, objects, spec)
                if 2 <= len(referents) < len(objects):
                    found[description] = referents
    return list(found.items())


def _referents(description: _Description, objects: tuple[ShapeObject, ...], spec: RefShapesSpec) -> list[ShapeObject]:
    """The objects a description is true of; a position needs two candidates and a clear extreme."""
    candidates = [obj for obj in objects if all(getattr(description, name) in (None, getattr(obj, name)) for name in DIRECT_ATTRIBUTES)]
    if description.leaves:
        return _sole_leaver(candidates, spec)
    if description.position is None:
        return candidates
    extreme = _clear_extreme(candidates, description.position, spec)
    return [] if extreme is None else [extreme]


def _sole_leaver(candidates: list[ShapeObject], spec: RefShapesSpec) -> list[ShapeObject]:
    """The one candidate that is wholly out of view in some frame, when every other one stays in view in every frame;
    else none (an object cut by the edge would make "the one that leaves" unclear)."""
    leaving = [obj for obj in candidates if _leaves(obj, spec)]
    staying = [obj for obj in candidates if all(obj.in_view(t, spec.size) for t in range(spec.frames))]
    return leaving if len(leaving) == 1 and len(staying) == len(candidates) - 1 else []


def _leaves(obj: ShapeObject, spec: RefShapesSpec) -> bool:
    """Whether the object is wholly out of view in some frame."""
    return any(obj.out_of_view(t, spec.size) for t in range(spec.frames))


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


def _sentence(rng: np.random.Generator, description: _Description, count: int = 1) -> str:
    """The description in words, e.g. ``the large red circle moving left``; about ``count`` objects, e.g. ``the two
    red circles`` or ``the shapes that move to the left`` (the number said half of the time)."""
    head = description.shape or str(rng.choice(["object", "shape"]))
    words = (description.size, description.colour, head)
    if count > 1:
        number = COUNT_WORDS[count] if rng.random() < 0.5 else None
        words = (number, description.size, description.colour, head + ("es" if head.endswith("s") else "s"))
    noun = " ".join(word for word in words if word)
    if description.position is not None:
        return str(rng.choice(POSITION_TEMPLATES[description.position])).format(noun=noun)
    if description.leaves:
        return f"the {noun} {rng.choice(LEAVING_PHRASES)}"
    if description.motion is not None:
        phrase = str(rng.choice(MOTION_PHRASES[description.motion]))
        return f"the {noun} {phrase if count == 1 else ' '.join(PLURAL_VERBS.get(w, w) for w in phrase.split())}"
    return f"the {noun}"
