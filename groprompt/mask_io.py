"""Standard output formats: DAVIS palette PNGs, COCO RLE masks, the Ref-YouTube-VOS and MeViS submission zips.

Layouts written here:
- per expression: ``<root>/<video>/<exp_id>/<frame>.png``, palette PNGs with id 1 on the object;
- per frame, all objects: ``<root>/<video>/<frame>.png`` id maps, what ``groprompt eval-masks`` reads;
- submission: a zip of ``Annotations/<video>/<exp_id>/<frame>.png`` (Ref-YouTube-VOS; MeViS: ``<video>/<exp_id>/<frame>.png``
  at the top), greyscale PNGs with values 0/255.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from groprompt.errors import DataError
from groprompt.files import Location, atomic_path, location, readable

VOID_ID = 255  # DAVIS void label: ground-truth pixels that J and F ignore (a shard stores an unannotated frame as all void)


def davis_palette() -> list[int]:
    """The DAVIS/PASCAL VOC colour palette (256 RGB triples, flattened)."""
    palette = []
    for index in range(256):
        r = g = b = 0
        c = index
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette += [r, g, b]
    return palette


def read_index_png(path: str | Path | Location) -> np.ndarray:
    """Read a palette (or greyscale) PNG (local or in object storage) as an (H, W) int32 map of object ids."""
    path = location(path)
    try:
        with Image.open(readable(path)) as image:
            if image.mode not in ("P", "L", "1", "I", "I;16"):
                raise DataError(f"{path}: expected a palette or greyscale PNG, got mode {image.mode}")
            return np.asarray(image, dtype=np.int32)
    except (OSError, SyntaxError) as error:
        raise DataError(f"{path}: unreadable image: {error}") from error


def write_index_png(path: str | Path | Location, ids: np.ndarray) -> None:
    """Write an (H, W) map of object ids (0-255) as a DAVIS palette PNG, atomically (local or in object storage)."""
    path = location(path)
    if ids.ndim != 2 or ids.min(initial=0) < 0 or ids.max(initial=0) > 255:
        raise ValueError(f"{path}: expected an (H, W) id map with values in 0..255")
    image = Image.fromarray(ids.astype(np.uint8), mode="P")
    image.putpalette(davis_palette())
    with atomic_path(path) as temporary:
        image.save(temporary, format="PNG")


def markdown_table(rows: list[dict[str, object]], float_format: str = ".4f") -> str:
    """A GitHub-flavoured Markdown table of dictionaries (columns in the first row's order)."""
    if not rows:
        return ""
    columns = list(rows[0])

    def cell(value: object) -> str:
        return format(value, float_format) if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(row.get(column, "")) for column in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def mask_to_rle(mask: np.ndarray) -> dict[str, object]:
    """COCO run-length encoding of an (H, W) binary mask, JSON-safe: ``{"size": [H, W], "counts": str}``."""
    if mask.ndim != 2:
        raise ValueError(f"expected an (H, W) mask, got shape {mask.shape}")
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(n) for n in rle["size"]], "counts": rle["counts"].decode("ascii")}


def rle_to_mask(rle: Mapping[str, object]) -> np.ndarray:
    """The (H, W) bool mask of a COCO RLE (``counts`` as str or bytes)."""
    size, counts = rle.get("size"), rle.get("counts")
    if not (isinstance(size, Sequence) and len(size) == 2 and isinstance(counts, (str, bytes))):
        raise DataError(f"not a COCO RLE: expected 'size' [H, W] and string 'counts', got keys {sorted(rle)}")
    encoded = {"size": [int(n) for n in size], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return mask_utils.decode(encoded).astype(bool)


def ids_from_masks(masks: Mapping[int, np.ndarray]) -> np.ndarray:
    """One (H, W) id map from binary masks by object id (1..254); where masks overlap the higher id wins."""
    shapes = {mask.shape for mask in masks.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"expected one or more (H, W) masks of one shape, got shapes {sorted(shapes)}")
    if not all(1 <= obj < VOID_ID for obj in masks):
        raise ValueError(f"object ids must be in 1..{VOID_ID - 1} (0 is background, {VOID_ID} void), got {sorted(masks)}")
    ids = np.zeros(next(iter(shapes)), dtype=np.uint8)
    for obj in sorted(masks):
        ids[masks[obj].astype(bool)] = obj
    return ids


def write_expression_pngs(root: str | Path | Location, video: str, exp_id: str, masks: Iterable[tuple[str, np.ndarray]]) -> int:
    """Write one expression's masks as ``<root>/<video>/<exp_id>/<frame>.png``; returns the frame count.

    ``masks`` yields (frame name, (H, W) binary mask); each is a DAVIS palette PNG with id 1 on the object,
    so a folder ``<root>/<video>`` scores with ``groprompt eval-masks`` against a single-object ground truth.
    """
    folder = location(root) / _safe_name(video) / _safe_name(exp_id)
    count = 0
    for frame, mask in masks:
        write_index_png(folder / f"{_safe_name(frame)}.png", mask.astype(bool).astype(np.uint8))
        count += 1
    return count


def write_object_pngs(root: str | Path | Location, video: str, frames: Iterable[tuple[str, Mapping[int, np.ndarray]]]) -> int:
    """Write ``<root>/<video>/<frame>.png`` id maps (``ids_from_masks``), the ``eval-masks`` layout; returns the count.

    ``frames`` yields (frame name, {object id: (H, W) binary mask}); for Ref-DAVIS17, pass per frame the masks
    predicted for one annotator's expressions, keyed by the object each expression refers to.
    """
    folder = location(root) / _safe_name(video)
    count = 0
    for frame, masks in frames:
        write_index_png(folder / f"{_safe_name(frame)}.png", ids_from_masks(masks))
        count += 1
    return count


SUBMISSION_ROOT = "Annotations"


@dataclass(frozen=True)
class SubmissionLayout:
    """A benchmark's server submission: members ``<root>/<video>/<exp_id>/<frame>.png`` (``root`` "": at the top)."""

    benchmark: str
    root: str


REF_YOUTUBE_VOS_SUBMISSION = SubmissionLayout("Ref-YouTube-VOS", SUBMISSION_ROOT)
MEVIS_SUBMISSION = SubmissionLayout("MeViS", "")  # the video folders directly (MeViS README: sample_submission_valid.zip)


def write_submission_zip(
    path: str | Path | Location,
    masks: Iterable[tuple[str, str, str, np.ndarray]],
    expected: Collection[tuple[str, str, str]] | None = None,
    layout: SubmissionLayout = REF_YOUTUBE_VOS_SUBMISSION,
) -> int:
    """Write a submission zip (Ref-YouTube-VOS unless ``layout`` says otherwise), atomically; returns the number of masks.

    ``masks`` yields (video, exp_id, frame name, (H, W) binary mask). Members are
    ``Annotations/<video>/<exp_id>/<frame>.png`` (``layout.root``): 8-bit greyscale PNGs, 255 on the object and 0
    elsewhere, as the official CodaLab server's reference submissions (MTTR, ReferFormer) write them. Names must be
    plain path components (no separators, no ``.``/``..``) and unique. The server expects every frame of every
    expression of every video in the split: given ``expected`` (video, exp_id, frame) members, anything missing
    or extra is a DataError (``check_submission``) and no zip is written. ``path`` may be in object storage.
    """
    path = location(path)
    names: set[str] = set()
    written: set[tuple[str, str, str]] = set()
    with atomic_path(path) as temporary, zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for video, exp_id, frame, mask in masks:
            name = submission_member(video, exp_id, frame, layout.root)
            if name in names:
                raise ValueError(f"{name}: duplicate submission member")
            if mask.ndim != 2:
                raise ValueError(f"{name}: expected an (H, W) mask, got shape {mask.shape}")
            names.add(name)
            written.add((video, exp_id, frame))
            buffer = io.BytesIO()
            Image.fromarray(mask.astype(bool).astype(np.uint8) * 255).save(buffer, format="PNG")
            archive.writestr(name, buffer.getvalue())
        if expected is not None:
            check_submission(path, written, expected, layout)
    return len(names)


def submission_member(video: str, exp_id: str, frame: str, root: str = SUBMISSION_ROOT) -> str:
    """The zip member name of one mask: ``<root>/<video>/<exp_id>/<frame>.png`` (``<video>/...`` when ``root`` is "")."""
    return "/".join([*([root] if root else []), _safe_name(video), _safe_name(exp_id), f"{_safe_name(frame)}.png"])


def check_submission(
    path: str | Path | Location,
    written: Collection[tuple[str, str, str]],
    expected: Collection[tuple[str, str, str]],
    layout: SubmissionLayout = REF_YOUTUBE_VOS_SUBMISSION,
) -> None:
    """DataError unless the (video, exp_id, frame) members ``written`` are exactly the ``expected`` ones; the message
    gives the counts and the first missing and extra members, by name."""
    missing, extra = sorted(set(expected) - set(written)), sorted(set(written) - set(expected))
    if not missing and not extra:
        return
    problems = (
        [f"{len(missing)} of the {len(expected)} expected masks missing (first: {submission_member(*missing[0], layout.root)})"]
        if missing
        else []
    )
    problems += [f"{len(extra)} masks not in the split (first: {submission_member(*extra[0], layout.root)})"] if extra else []
    raise DataError(f"{path}: incomplete {layout.benchmark} submission, {len(written)} masks written: {'; '.join(problems)}")


def _safe_name(name: str) -> str:
    """``name`` if it is one plain path component, else ValueError."""
    if not name or name in (".", "..") or any(c in name for c in "/\\\0") or name != name.strip():
        raise ValueError(f"unsafe name {name!r}: expected one plain path component")
    return name
