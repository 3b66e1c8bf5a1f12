"""The RefShapes scene: flat-coloured shapes on straight paths over a textured, noisy background.

Each scene holds 2-4 objects moving at constant speed; later objects occlude earlier ones and objects may leave
the frame (a scene asked for a leaver sends one object, at random, wholly out of view by the last frame). Every scene
holds at least one pair of objects that look identical and differ only in motion, so some sentences can be resolved
only over time.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from groprompt.data.refshapes.spec import RefShapesSpec

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

SPEED_RANGE = (2.0, 6.0)  # pixels per frame at 256 pixels; scales with the frame side
EXIT_PROBABILITY = 0.35  # chance that a moving object is placed so that it leaves the frame
LEAVER_SPEED_SLACK = 1.25  # a leaver moves at least this factor above the least speed that lets it leave
CROSSING_PROBABILITY = 0.5  # chance that a video sends one moving object across another one
FIRST_FRAME_VISIBLE = 0.8  # least visible fraction of every object in the first frame
NOISE_AMPLITUDE = 10  # per-frame pixel noise, uniform in [-10, 10]
COLOUR_JITTER = 12


def _regular_polygon(corners: int, radius: float = 1.0, phase: float = -np.pi / 2) -> np.ndarray:
    """The (corners, 2) corners of a regular polygon centred at the origin, the first at angle ``phase``."""
    angles = phase + 2 * np.pi * np.arange(corners) / corners
    return np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1)


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    """A star outline: outer corners on the unit circle alternating with inner corners at radius ``inner``."""
    outer_corners = _regular_polygon(points)
    inner_corners = _regular_polygon(points, inner, -np.pi / 2 + np.pi / points)
    return np.stack([outer_corners, inner_corners], axis=1).reshape(-1, 2)


def _cross(arm: float = 0.34) -> np.ndarray:
    """A plus-shaped outline whose arms have half-width ``arm`` and whose corners touch the unit circle."""
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

    def in_view(self, t: int, size: int) -> bool:
        """Whether the whole object lies inside a ``size``-pixel frame in frame ``t``, off its border pixels."""
        outline = self.outline(t)
        return bool(((outline >= 1) & (outline <= size - 2)).all())

    def out_of_view(self, t: int, size: int) -> bool:
        """Whether the object lies wholly beyond an edge of a ``size``-pixel frame in frame ``t``: none of it is drawn."""
        outline = self.outline(t)
        return bool((outline.max(axis=0) < -1).any() or (outline.min(axis=0) > size).any())


@dataclass(frozen=True)
class Scene:
    """A valid scene: its objects in drawing order and its (T, H, W) uint8 map of visible object ids (0 = background)."""

    objects: tuple[ShapeObject, ...]
    ids: np.ndarray


def sample_scene(rng: np.random.Generator, spec: RefShapesSpec, count: int, leaver: bool = False) -> Scene | None:
    """``count`` random objects and where they are visible, one of them sent out of the frame when ``leaver`` (and the
    video has at least three frames); None when the draw fails ``_scene_is_valid``."""
    objects = _sample_objects(rng, spec, count, leaver and spec.frames > 2)
    silhouettes = np.stack([[_silhouette(obj, t, spec.size) for t in range(spec.frames)] for obj in objects])
    ids = _id_maps(objects, silhouettes)
    return Scene(objects, ids) if _scene_is_valid(objects, silhouettes, ids) else None


def _sample_objects(rng: np.random.Generator, spec: RefShapesSpec, count: int, leaver: bool) -> tuple[ShapeObject, ...]:
    """``count`` objects in random drawing order, two of which look identical; with ``leaver``, a random one of them
    moves and leaves the frame (no crossing moves it)."""
    looks = [_random_look(rng)] * 2 + [_random_look(rng) for _ in range(count - 2)]
    order = rng.permutation(count)
    leaving = int(rng.integers(1, count + 1)) if leaver else None
    objects = []
    for obj_id, slot in enumerate(order, start=1):
        shape, colour, size = looks[slot]
        motion = str(rng.choice([m for m in MOTIONS if m != "still"] if obj_id == leaving else list(MOTIONS)))
        radius = SIZES[size] * spec.size
        start, velocity = _path(rng, motion, radius, spec, leaves=obj_id == leaving)
        objects.append(ShapeObject(obj_id, shape, colour, size, motion, radius, start, velocity))
    if rng.random() < CROSSING_PROBABILITY:
        return _with_crossing(rng, tuple(objects), spec.frames, leaving)
    return tuple(objects)


def _with_crossing(rng: np.random.Generator, objects: tuple[ShapeObject, ...], frames: int, keep: int | None) -> tuple[ShapeObject, ...]:
    """Move one moving object's path (never object ``keep``'s) so that it passes over another object at a random frame."""
    moving = [obj for obj in objects if obj.motion != "still" and obj.obj_id != keep]
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
    rng: np.random.Generator, motion: str, radius: float, spec: RefShapesSpec, leaves: bool = False
) -> tuple[tuple[float, float], tuple[float, float]]:
    """A start inside the frame and a constant velocity; some moving objects are placed to leave the frame, and one that
    ``leaves`` always is, as fast as it must be to be gone by the last frame (given at least three frames)."""
    size = spec.size
    x, y = rng.uniform(radius, size - radius, 2)
    dx, dy = MOTIONS[motion]
    if motion == "still":
        return (float(x), float(y)), (0.0, 0.0)
    speed = rng.uniform(*SPEED_RANGE) * size / 256
    if leaves:
        speed = max(speed, LEAVER_SPEED_SLACK * (2 * radius + 1) / (spec.frames - 2))  # exit_lo < exit_hi below
    travel = speed * (spec.frames - 1)
    # ``ahead``: first-frame distance from the centre to the edge the object moves towards. The object is
    # whole in frames 0 and 1 once ahead >= radius + speed, and gone by the last frame if ahead < travel - radius.
    exit_lo, exit_hi = radius + speed, min(travel - radius - 1, size - radius)
    stay_lo, stay_hi = radius + travel, size - radius
    if (leaves or rng.random() < EXIT_PROBABILITY) and exit_lo < exit_hi:
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
        inside = [obj.in_view(t, size) for t in range(len(ids))]
        apart = [inside[t] and not (_grow(silhouette[t]) & others[t]).any() for t in range(len(ids))]
        if not inside[0] or sum(apart) < 2:
            return False
    return True


def _grow(mask: np.ndarray) -> np.ndarray:
    """The mask grown by one pixel (8-neighbourhood)."""
    return cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)


def render_frames(rng: np.random.Generator, scene: Scene, size: int) -> np.ndarray:
    """(T, H, W, 3) uint8 frames: flat-coloured objects over a static textured background, plus pixel noise."""
    colours = np.zeros((len(scene.objects) + 1, 3), np.int16)
    for obj in scene.objects:
        colours[obj.obj_id] = np.asarray(COLOURS[obj.colour]) + rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, 3)
    frames = np.repeat(np.round(_background(rng, size)).astype(np.int16)[None], len(scene.ids), axis=0)
    drawn = scene.ids > 0
    frames[drawn] = colours[scene.ids[drawn]]
    frames += rng.integers(-NOISE_AMPLITUDE, NOISE_AMPLITUDE + 1, frames.shape, dtype=np.int16)
    return np.clip(frames, 0, 255).astype(np.uint8)


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
