"""RefShapes: a synthetic referring-video benchmark, written in the Ref-YouTube-VOS layout.

Each video shows 2-4 flat-coloured shapes moving on straight paths at constant speed over a textured,
noisy background; later objects occlude earlier ones and objects may leave the frame. Every video holds at
least one pair of objects that look identical and differ only in motion, so some sentences can be resolved
only over time. Expressions come from templates, carry a type tag (appearance, position, motion,
appearance+motion), and are checked when generated to be true of, and unique to, their object.

``make_video`` builds one video in memory; ``write_refshapes`` writes a whole benchmark to disk::

    <out>/<split>/JPEGImages/<video>/<frame>.jpg
    <out>/<split>/Annotations/<video>/<frame>.png      DAVIS palette, object ids 1..n
    <out>/<split>/meta.json                            objects, their look and the frames they appear in
    <out>/meta_expressions/<split>/meta_expressions.json
    <out>/refshapes.json                               the spec; written last, it marks the output complete
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, replace
from itertools import product
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from groprompt.data.records import DataError, Expression
from groprompt.outputs import write_index_png

SHAPES = ("circle", "square", "triangle", "diamond", "star", "cross")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 175, 60),
    "blue": (35, 80, 230),
    "yellow": (245, 220, 30),
    "purple": (150, 50, 200),
    "orange": (250, 135, 15),
}
SIZES: dict[str, float] = {"small": 0.055, "large": 0.095}  # circumradius as a fraction of the frame side
MOTIONS: dict[str, tuple[int, int]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1), "still": (0, 0)}
POSITIONS = ("left", "right", "top", "bottom")
KINDS = ("appearance", "position", "motion", "appearance+motion")

SPEED_RANGE = (2.0, 6.0)  # pixels per frame at 256 pixels; scales with the frame side
EXIT_PROBABILITY = 0.35  # chance that a moving object is placed so that it leaves the frame
CROSSING_PROBABILITY = 0.5  # chance that a video sends one moving object across another one
POSITION_MARGIN = 0.15  # first-frame gap, as a fraction of the frame side, that makes a position clear
FIRST_FRAME_VISIBLE = 0.8  # least visible fraction of every object in the first frame
NOISE_AMPLITUDE = 10  # per-frame pixel noise, uniform in [-10, 10]
COLOUR_JITTER = 12
JPEG_QUALITY = 90
MAX_ATTEMPTS = 500
SPEC_FILE = "refshapes.json"
FORMAT_VERSION = 1

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
NOUN_ATTRIBUTES = (
    ("shape",), ("colour",), ("colour", "shape"), ("size", "shape"), ("size", "colour"), ("size", "colour", "shape")
)


def _regular_polygon(corners: int, radius: float = 1.0, phase: float = -np.pi / 2) -> np.ndarray:
    angles = phase + 2 * np.pi * np.arange(corners) / corners
    return np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1)


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    outer_corners = _regular_polygon(points)
    inner_corners = _regular_polygon(points, inner, -np.pi / 2 + np.pi / points)
    return np.stack([outer_corners, inner_corners], axis=1).reshape(-1, 2)


def _cross(arm: float = 0.34) -> np.ndarray:
    a, e = arm, float(np.sqrt(1 - arm**2))  # arm half-width and reach; the corners touch the unit circle
    arm = np.array([(-a, -e), (a, -e), (a, -a)])  # the top arm; the others are quarter turns of it
    turn = np.array([[0, 1], [-1, 0]])
    return np.concatenate([arm @ np.linalg.matrix_power(turn, k) for k in range(4)])


# Outlines of radius-1 shapes centred at the origin (x right, y down), all inside the unit disc.
UNIT_OUTLINES: dict[str, np.ndarray] = {
    "circle": _regular_polygon(48),
    "square": np.array([(-0.7, -0.7), (0.7, -0.7), (0.7, 0.7), (-0.7, 0.7)]),
    "triangle": _regular_polygon(3),
    "diamond": _regular_polygon(4),
    "star": _star(),
    "cross": _cross(),
}


@dataclass(frozen=True)
class RefShapesSpec:
    """What to generate: ``videos`` videos of ``frames`` frames, ``size`` x ``size`` pixels, from ``seed``."""

    videos: int = 40
    frames: int = 12
    size: int = 256
    seed: int = 0
    min_objects: int = 2
    max_objects: int = 4

    def __post_init__(self) -> None:
        if self.videos < 1 or self.frames < 2 or self.size < 64:
            raise ValueError(f"{self}: need videos >= 1, frames >= 2 and size >= 64")
        if not 2 <= self.min_objects <= self.max_objects <= 6:
            raise ValueError(f"{self}: need 2 <= min_objects <= max_objects <= 6")


@dataclass(frozen=True)
class ShapeObject:
    """One object: its look, its straight path (centre at frame t = start + t * velocity) and its id."""

    obj_id: int
    shape: str
    colour: str
    size: str
    motion: str
    radius: float  # circumradius, pixels
    start: tuple[float, float]  # centre (x, y) in the first frame, pixels
    velocity: tuple[float, float]  # pixels per frame

    @property
    def look(self) -> tuple[str, str, str]:
        """Everything a single frame shows about the object."""
        return (self.shape, self.colour, self.size)

    def centre(self, t: int) -> tuple[float, float]:
        """The centre (x, y) in frame ``t``, in pixels (may lie outside the frame)."""
        return (self.start[0] + t * self.velocity[0], self.start[1] + t * self.velocity[1])

    def outline(self, t: int) -> np.ndarray:
        """The (K, 2) polygon (x, y) of the object in frame ``t``."""
        return UNIT_OUTLINES[self.shape] * self.radius + np.asarray(self.centre(t))


@dataclass(frozen=True)
class SyntheticVideo:
    """One generated video: RGB frames, object-id maps (visible pixels), objects and expressions."""

    video_id: str
    frames: np.ndarray  # (T, H, W, 3) uint8
    ids: np.ndarray  # (T, H, W) uint8, 0 = background, obj_id where the object is visible
    objects: tuple[ShapeObject, ...]
    expressions: tuple[Expression, ...]

    @property
    def frame_names(self) -> tuple[str, ...]:
        """``00000``, ``00001``, ...: the file stems of the frames and masks."""
        return tuple(f"{t:05d}" for t in range(len(self.frames)))


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


def video_id(index: int) -> str:
    """The id of the ``index``-th video, e.g. ``rs000012``."""
    return f"rs{index:06d}"


def make_video(spec: RefShapesSpec, index: int) -> SyntheticVideo:
    """Generate the ``index``-th video of ``spec`` in memory; the same arguments give the same video."""
    rng = np.random.default_rng([spec.seed, index])
    count = int(rng.integers(spec.min_objects, spec.max_objects + 1))
    for _ in range(MAX_ATTEMPTS):
        objects = _sample_objects(rng, spec, count)
        silhouettes = np.stack([[_silhouette(obj, t, spec.size) for t in range(spec.frames)] for obj in objects])
        ids = _id_maps(objects, silhouettes)
        if not _scene_is_valid(objects, silhouettes, ids):
            continue
        expressions = _expressions(rng, objects, spec)
        if expressions:
            frames = _render(rng, objects, ids, spec.size)
            return SyntheticVideo(video_id(index), frames, ids, objects, expressions)
    raise RuntimeError(f"{spec}: no valid scene for video {index} in {MAX_ATTEMPTS} attempts")


def _sample_objects(rng: np.random.Generator, spec: RefShapesSpec, count: int) -> tuple[ShapeObject, ...]:
    """``count`` objects in random drawing order, two of which look identical."""
    looks = [_random_look(rng)] * 2 + [_random_look(rng) for _ in range(count - 2)]
    order = rng.permutation(count)
    objects = []
    for obj_id, slot in enumerate(order, start=1):
        shape, colour, size = looks[slot]
        motion = str(rng.choice(list(MOTIONS)))
        radius = SIZES[size] * spec.size
        start, velocity = _path(rng, motion, radius, spec)
        objects.append(ShapeObject(obj_id, shape, colour, size, motion, radius, start, velocity))
    if rng.random() < CROSSING_PROBABILITY:
        return _with_crossing(rng, tuple(objects), spec.frames)
    return tuple(objects)


def _with_crossing(rng: np.random.Generator, objects: tuple[ShapeObject, ...], frames: int) -> tuple[ShapeObject, ...]:
    """Move one moving object's path so that it passes over another object at a random frame."""
    moving = [obj for obj in objects if obj.motion != "still"]
    if not moving:
        return objects
    mover = moving[int(rng.integers(len(moving)))]
    others = [obj for obj in objects if obj is not mover]
    target = others[int(rng.integers(len(others)))]
    meet = int(rng.integers(1, frames))
    dx, dy = MOTIONS[mover.motion]
    offset = rng.uniform(-0.5, 0.5) * (mover.radius + target.radius)
    x, y = target.centre(meet)
    x, y = (x + offset * abs(dy), y + offset * abs(dx))  # sideways to the direction of motion
    start = (x - meet * mover.velocity[0], y - meet * mover.velocity[1])
    return tuple(replace(obj, start=start) if obj is mover else obj for obj in objects)


def _random_look(rng: np.random.Generator) -> tuple[str, str, str]:
    """A random (shape, colour, size)."""
    return (str(rng.choice(SHAPES)), str(rng.choice(list(COLOURS))), str(rng.choice(list(SIZES))))


def _path(
    rng: np.random.Generator, motion: str, radius: float, spec: RefShapesSpec
) -> tuple[tuple[float, float], tuple[float, float]]:
    """A start inside the frame and a constant velocity; some moving objects are placed to leave the frame."""
    size = spec.size
    x, y = rng.uniform(radius, size - radius, 2)
    dx, dy = MOTIONS[motion]
    if motion == "still":
        return (float(x), float(y)), (0.0, 0.0)
    speed = rng.uniform(*SPEED_RANGE) * size / 256
    travel = speed * (spec.frames - 1)
    # ``ahead``: first-frame distance from the centre to the edge the object moves towards. The object is
    # whole in frames 0 and 1 once ahead >= radius + speed, and gone by the last frame if ahead < travel - radius.
    exit_lo, exit_hi = radius + speed, min(travel - radius - 1, size - radius)
    stay_lo, stay_hi = radius + travel, size - radius
    if rng.random() < EXIT_PROBABILITY and exit_lo < exit_hi:
        ahead = rng.uniform(exit_lo, exit_hi)
    elif stay_lo < stay_hi:
        ahead = rng.uniform(stay_lo, stay_hi)
    else:
        ahead = rng.uniform(radius, size - radius)
    if dx:
        x = ahead if dx < 0 else size - ahead
    else:
        y = ahead if dy < 0 else size - ahead
    return (float(x), float(y)), (dx * speed, dy * speed)


def _silhouette(obj: ShapeObject, t: int, size: int) -> np.ndarray:
    """The (H, W) boolean mask of the whole object in frame ``t``, ignoring occlusion."""
    # OpenCV clamps edges that lie beyond the canvas onto its border, so draw with a margin and crop it.
    margin = 2
    canvas = np.zeros((size + 2 * margin, size + 2 * margin), np.uint8)
    points = np.round((obj.outline(t) + margin) * 16).astype(np.int32)
    cv2.fillPoly(canvas, [points], 1, lineType=cv2.LINE_8, shift=4)
    return canvas[margin:-margin, margin:-margin].astype(bool)


def _id_maps(objects: tuple[ShapeObject, ...], silhouettes: np.ndarray) -> np.ndarray:
    """(T, H, W) visible object ids: objects are drawn in id order, later ones on top."""
    ids = np.zeros(silhouettes.shape[1:], np.uint8)
    for obj, silhouette in zip(objects, silhouettes):
        ids[silhouette] = obj.obj_id
    return ids


def _scene_is_valid(objects: tuple[ShapeObject, ...], silhouettes: np.ndarray, ids: np.ndarray) -> bool:
    """Objects differ in look or motion, are mostly visible in the first frame, and stand apart (inside the
    frame, touching no other object) in at least two frames, so that their motion can be seen."""
    if len({(obj.look, obj.motion) for obj in objects}) < len(objects):
        return False
    size = ids.shape[-1]
    for index, obj in enumerate(objects):
        silhouette = silhouettes[index]
        visible = (ids == obj.obj_id).sum(axis=(1, 2))
        if visible[0] < FIRST_FRAME_VISIBLE * silhouette[0].sum():
            return False
        others = np.delete(silhouettes, index, axis=0).any(axis=0)
        inside = [bool(((1 <= outline) & (outline <= size - 2)).all()) for outline in map(obj.outline, range(len(ids)))]
        apart = [inside[t] and not (_grow(silhouette[t]) & others[t]).any() for t in range(len(ids))]
        if not inside[0] or sum(apart) < 2:
            return False
    return True


def _grow(mask: np.ndarray) -> np.ndarray:
    """The mask grown by one pixel (8-neighbourhood)."""
    return cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)


def _expressions(
    rng: np.random.Generator, objects: tuple[ShapeObject, ...], spec: RefShapesSpec
) -> tuple[Expression, ...]:
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
    candidates = [
        obj
        for obj in objects
        if all(getattr(description, name) in (None, getattr(obj, name)) for name in DIRECT_ATTRIBUTES)
    ]
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


def _render(rng: np.random.Generator, objects: tuple[ShapeObject, ...], ids: np.ndarray, size: int) -> np.ndarray:
    """(T, H, W, 3) uint8 frames: flat-coloured objects over a static textured background, plus pixel noise."""
    colours = np.zeros((len(objects) + 1, 3), np.int16)
    for obj in objects:
        colours[obj.obj_id] = np.asarray(COLOURS[obj.colour]) + rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, 3)
    scene = np.repeat(np.round(_background(rng, size)).astype(np.int16)[None], len(ids), axis=0)
    drawn = ids > 0
    scene[drawn] = colours[ids[drawn]]
    scene += rng.integers(-NOISE_AMPLITUDE, NOISE_AMPLITUDE + 1, scene.shape, dtype=np.int16)
    return np.clip(scene, 0, 255).astype(np.uint8)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """(H, W, 3) float32: a muted colour gradient with low- and mid-frequency texture."""
    grey = rng.uniform(90, 160)
    ends = grey + rng.uniform(-40, 40, (2, 3))
    angle = rng.uniform(0, 2 * np.pi)
    grid = np.arange(size, dtype=np.float32) / size
    ramp = np.cos(angle) * grid[None, :] + np.sin(angle) * grid[:, None]
    ramp = (ramp - ramp.min()) / (ramp.max() - ramp.min())
    image = ends[0] * (1 - ramp[..., None]) + ends[1] * ramp[..., None]
    for cells, amplitude in ((5, 18.0), (17, 8.0)):
        coarse = rng.standard_normal((cells, cells, 3)).astype(np.float32)
        image += amplitude * cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    return image.astype(np.float32)


def split_assignment(spec: RefShapesSpec, valid_fraction: float) -> dict[str, list[str]]:
    """Video ids per split: ``round(videos * valid_fraction)`` random videos go to ``valid`` (train keeps one)."""
    if not 0 <= valid_fraction < 1:
        raise ValueError(f"valid_fraction must lie in [0, 1), got {valid_fraction}")
    n_valid = min(int(round(spec.videos * valid_fraction)), spec.videos - 1)
    valid = set(np.random.default_rng(spec.seed).permutation(spec.videos)[:n_valid].tolist())
    return {
        "train": [video_id(i) for i in range(spec.videos) if i not in valid],
        "valid": [video_id(i) for i in range(spec.videos) if i in valid],
    }


def write_refshapes(
    out_dir: str | Path, spec: RefShapesSpec, valid_fraction: float = 0.25, progress: bool = True
) -> dict[str, list[str]]:
    """Write the benchmark under ``out_dir`` and return the video ids per split.

    A complete output with the same spec is left as it is; one with another spec raises DataError. The spec
    file is written last, so an interrupted run is never taken for a complete one and is redone.
    """
    out = Path(out_dir)
    splits = split_assignment(spec, valid_fraction)
    record = {
        "format": "refshapes",
        "version": FORMAT_VERSION,
        "spec": asdict(spec),
        "valid_fraction": valid_fraction,
        "splits": splits,
    }
    if _is_complete(out, record):
        return splits
    split_of = {vid: split for split, vids in splits.items() for vid in vids}
    metas: dict[str, dict[str, Any]] = {split: {} for split in splits}
    expressions: dict[str, dict[str, Any]] = {split: {} for split in splits}
    for index in tqdm(range(spec.videos), desc="RefShapes", unit="video", disable=not progress):
        video = make_video(spec, index)
        split = split_of[video.video_id]
        _write_video(out / split, video)
        metas[split][video.video_id] = _meta_entry(video)
        expressions[split][video.video_id] = _expressions_entry(video)
    for split in splits:
        _write_json(out / split / "meta.json", {"videos": metas[split]})
        _write_json(out / "meta_expressions" / split / "meta_expressions.json", {"videos": expressions[split]})
    _write_json(out / SPEC_FILE, record)
    return splits


def _is_complete(out: Path, record: dict[str, Any]) -> bool:
    """Whether ``out`` already holds this exact output; DataError when it holds a different one."""
    path = out / SPEC_FILE
    if not path.is_file():
        return False
    try:
        stored = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise DataError(f"{path}: unreadable RefShapes spec file: {error}") from error
    if stored != json.loads(json.dumps(record)):
        raise DataError(
            f"{out}: holds RefShapes generated with {stored.get('spec')}, valid_fraction {stored.get('valid_fraction')}; "
            f"asked for {record['spec']}, valid_fraction {record['valid_fraction']}: choose another folder or delete it"
        )
    return True


def _write_video(split_dir: Path, video: SyntheticVideo) -> None:
    frame_dir = split_dir / "JPEGImages" / video.video_id
    mask_dir = split_dir / "Annotations" / video.video_id
    frame_dir.mkdir(parents=True, exist_ok=True)
    for name, frame, ids in zip(video.frame_names, video.frames, video.ids):
        Image.fromarray(frame).save(frame_dir / f"{name}.jpg", format="JPEG", quality=JPEG_QUALITY)
        write_index_png(mask_dir / f"{name}.png", ids)


def _meta_entry(video: SyntheticVideo) -> dict[str, Any]:
    """The Ref-YouTube-VOS ``meta.json`` entry: per object its category (shape), look, motion and frames present."""
    objects = {}
    for obj in video.objects:
        present = (video.ids == obj.obj_id).any(axis=(1, 2))
        objects[str(obj.obj_id)] = {
            "category": obj.shape,
            "colour": obj.colour,
            "size": obj.size,
            "motion": obj.motion,
            "frames": [name for name, here in zip(video.frame_names, present) if here],
        }
    return {"objects": objects}


def _expressions_entry(video: SyntheticVideo) -> dict[str, Any]:
    """The ``meta_expressions.json`` entry of one video."""
    return {
        "expressions": {e.exp_id: {"exp": e.text, "obj_id": str(e.obj_id), "type": e.kind} for e in video.expressions},
        "frames": list(video.frame_names),
    }


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write JSON atomically: a temporary file beside it, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(payload))
    os.replace(temporary, path)
