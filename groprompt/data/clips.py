"""Training clips: frame-shard metadata (boxes, sentences) joined with embedding shards by sample key.

Workers never run the SAM image encoder: a clip is T consecutive cached embeddings, one referring sentence S_i
with its boxes, and a negative sentence S_j (another object's expression in the same video, or another video's
when the video has one object). Only for a generator that reads pixels (Grounding DINO) are the clip's frames
decoded from the frame shard and resized (``pixel_size``); masks are never read.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Container, Iterator
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from groprompt.config import DataConfig
from groprompt.data.embeddings import FrameEncoder, check_embeddings, embedding_identity, read_embedding_shard
from groprompt.data.manifest import MANIFEST, read_manifest
from groprompt.data.pixels import resized_pixels
from groprompt.data.shards import ShardSample, check_shard, read_shard, sample_groups
from groprompt.errors import DataError
from groprompt.files import Location, location, sha256_file


@dataclass
class ClipBatch:
    """B clips of T frames, each with a referring sentence S_i and a negative sentence S_j.

    Boxes are normalised cxcywh of the frame; ``*_valid`` is False where the object is absent (and
    everywhere for a negative sentence taken from another video). A sentence about several objects (a group target)
    has their union box in ``boxes`` and each object's own box in ``members`` (B, T, M, 4; one member for a sentence
    about one object, padded with invalid members to the batch's largest group): the set mode trains on those
    (``model.multi_object``). ``annotated`` (B, T) is False on frames without annotation, where an absent object
    says nothing. ``same_video`` (B,) is True where S_j names
    another object of the clip's own video (whether or not that object is in the clip): only such pairs are
    contrastive. ``input_sizes`` (B, 2) are the (h, w) of the frames inside SAM's input, to place boxes in its
    prompt coordinates.
    """

    embeddings: torch.Tensor  # (B, T, C, g, g)
    sentences: list[str]
    negatives: list[str]
    boxes: torch.Tensor  # (B, T, 4)
    valid: torch.Tensor  # (B, T)
    negative_boxes: torch.Tensor  # (B, T, 4)
    negative_valid: torch.Tensor  # (B, T)
    same_video: torch.Tensor  # (B,) bool
    input_sizes: torch.Tensor  # (B, 2)
    pixels: torch.Tensor | None = None  # (B, T, 3, S, S) uint8 frames, for a generator that reads pixels
    previous: torch.Tensor | None = None  # (B, C, g, g) the embedding of the frame before each clip (motion input)
    members: torch.Tensor | None = None  # (B, T, M, 4); None: every sentence is about one object (``boxes``)
    members_valid: torch.Tensor | None = None  # (B, T, M)
    negative_members: torch.Tensor | None = None  # (B, T, M, 4)
    negative_members_valid: torch.Tensor | None = None  # (B, T, M)
    annotated: torch.Tensor | None = None  # (B, T) bool; None: every frame is annotated

    def target_sets(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The member boxes (2B, T, M, 4) and where they exist (2B, T, M) of the B sentences, then of their B negatives."""
        if self.members is None:
            return torch.cat([self.boxes, self.negative_boxes])[:, :, None], torch.cat([self.valid, self.negative_valid])[:, :, None]
        return torch.cat([self.members, self.negative_members]), torch.cat([self.members_valid, self.negative_members_valid])

    def to(self, device: torch.device | str) -> ClipBatch:
        """The batch with its tensors on ``device`` (sentences as they are)."""
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        return ClipBatch(**{name: value.to(device) if isinstance(value, torch.Tensor) else value for name, value in moved.items()})


@dataclass(frozen=True)
class ShardPair:
    """A frame shard and the embedding shard computed from it."""

    frames: Location
    embeddings: Location


@dataclass(frozen=True)
class ClipItem:
    """One training example (arrays, not yet batched)."""

    embeddings: np.ndarray  # (T, C, g, g)
    sentence: str
    negative: str
    boxes: np.ndarray  # (T, 4) normalised cxcywh
    valid: np.ndarray  # (T,) bool
    negative_boxes: np.ndarray
    negative_valid: np.ndarray
    same_video: bool  # S_j names another object of the same video
    input_size: tuple[int, int]
    members: np.ndarray  # (T, M, 4) the boxes of the sentence's objects (one for a sentence about one object)
    members_valid: np.ndarray  # (T, M)
    negative_members: np.ndarray  # (T, M', 4)
    negative_members_valid: np.ndarray  # (T, M')
    annotated: np.ndarray  # (T,) bool
    pixels: np.ndarray | None = None  # (T, 3, S, S) uint8
    previous: np.ndarray | None = None  # (C, g, g) the frame before the clip in its sample (its first frame at the start)


def shard_pairs(data: DataConfig, split: str, sam: FrameEncoder) -> list[ShardPair]:
    """The frame and embedding shards of a split (``<data.shards>/<split>``, ``<data.embeddings>/<split>``).

    Refuses embeddings computed with another SAM, weights, input size or dtype, or from other frame shards, and
    any shard whose file is not the one its manifest row describes (``check_shard``: size, sha256, samples).
    """
    frames_dir, embeddings_dir = location(data.shards) / split, location(data.embeddings) / split
    frames_manifest = frames_dir / MANIFEST
    frame_rows, _ = read_manifest(frames_manifest)
    embedding_rows, metadata = check_embeddings(embeddings_dir, embedding_identity(sam, data.embed_dtype))
    if metadata["frames_manifest"]["sha256"] != sha256_file(frames_manifest):
        raise DataError(f"{embeddings_dir / MANIFEST}: computed from other frame shards than {frames_manifest}; re-run pipelines/embed.py")
    embedded = {row["shard"]: row for row in embedding_rows}
    missing = [row["shard"] for row in frame_rows if row["shard"] not in embedded]
    if missing:
        raise DataError(f"{embeddings_dir}: no embeddings for frame shards {missing[:3]}; re-run pipelines/embed.py")
    pairs = []
    for row in frame_rows:
        pair = ShardPair(frames_dir / row["shard"], embeddings_dir / row["shard"])
        check_shard(pair.frames, row, rerun="pipelines/shard.py")
        check_shard(pair.embeddings, embedded[row["shard"]], rerun="pipelines/embed.py")
        pairs.append(pair)
    return pairs


def normalised_boxes(meta: dict[str, Any], obj_id: int | None, frames: range) -> tuple[np.ndarray, np.ndarray]:
    """(T, 4) normalised cxcywh boxes of an object over some frames of a sample, and where they exist."""
    per_frame = meta["boxes"].get(str(obj_id), [None] * len(meta["frame_names"])) if obj_id is not None else []
    boxes = np.zeros((len(frames), 4), np.float32)
    valid = np.zeros(len(frames), bool)
    for row, t in enumerate(frames):
        box = per_frame[t] if per_frame else None
        if box is None:
            continue
        x1, y1, x2, y2 = box
        w, h = meta["width"], meta["height"]
        boxes[row] = ((x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h)
        valid[row] = True
    return boxes, valid


def member_boxes(meta: dict[str, Any], obj_id: int | None, frames: range) -> tuple[np.ndarray, np.ndarray]:
    """(T, M, 4) normalised cxcywh boxes of the M objects a target is made of (a group's objects, or the object
    itself) over some frames of a sample, and (T, M) where they exist; M = 0 without a target."""
    if obj_id is None:
        return np.zeros((len(frames), 0, 4), np.float32), np.zeros((len(frames), 0), bool)
    members = sample_groups(meta).get(int(obj_id), (int(obj_id),))
    missing = [obj for obj in members if str(obj) not in meta["boxes"]]
    if missing:
        raise DataError(f"sample {meta['key']}: no boxes of object(s) {missing} of target {obj_id}; re-shard with pipelines/shard.py")
    boxes, valid = zip(*(normalised_boxes(meta, obj, frames) for obj in members))
    return np.stack(boxes, axis=1), np.stack(valid, axis=1)


def clip_ranges(n_frames: int, clip_len: int) -> list[range]:
    """Consecutive, non-overlapping clips of exactly ``clip_len`` frames."""
    return [range(start, start + clip_len) for start in range(0, n_frames - clip_len + 1, clip_len)]


def referring_expressions(meta: dict[str, Any]) -> list[dict[str, Any]]:
    """Expressions that name an annotated object."""
    return [e for e in meta["expressions"] if e["obj_id"] is not None and str(e["obj_id"]) in meta["boxes"]]


@dataclass(frozen=True, order=True)
class ClipRef:
    """Which training item: the clip starting at frame ``start`` of sample ``key``, with its ``expression``-th
    referring expression (``referring_expressions`` order)."""

    key: str
    start: int
    expression: int


def clip_refs(meta: dict[str, Any], clip_len: int) -> list[ClipRef]:
    """Every (clip, referring expression) of one sample whose object is visible in the clip: the training items."""
    expressions = referring_expressions(meta)
    return [
        ClipRef(meta["key"], frames.start, index)
        for frames in clip_ranges(len(meta["frame_names"]), clip_len)
        for index, expression in enumerate(expressions)
        if normalised_boxes(meta, expression["obj_id"], frames)[1].any()
    ]


def sample_items(
    meta: dict[str, Any],
    embeddings: np.ndarray,
    input_size: tuple[int, int],
    clip_len: int,
    rng: random.Random,
    other_sentences: list[str],
    wanted: Container[ClipRef],
    pixels: np.ndarray | None = None,
) -> Iterator[ClipItem]:
    """The ``wanted`` items of one sample (see ``clip_refs``), each with a negative: another object's expression of
    the video, or another video's sentence when the video has one object; with the embedding of the frame before the
    clip (the motion input of its first frame: a clip sees its past as the online stream does), and the clip's frames
    when the sample's ``pixels`` (W, 3, S, S) are given."""
    expressions = referring_expressions(meta)
    annotated = meta.get("annotated") or [True] * len(meta["frame_names"])
    for ref in clip_refs(meta, clip_len):
        if ref not in wanted:
            continue
        frames = range(ref.start, ref.start + clip_len)
        expression = expressions[ref.expression]
        boxes, valid = normalised_boxes(meta, expression["obj_id"], frames)
        others = [e for e in expressions if e["obj_id"] != expression["obj_id"]]
        negative = rng.choice(others) if others else None
        negative_text = negative["text"] if negative else (rng.choice(other_sentences) if other_sentences else "")
        negative_target = negative["obj_id"] if negative else None
        negative_boxes, negative_valid = normalised_boxes(meta, negative_target, frames)
        members, negative_members = member_boxes(meta, expression["obj_id"], frames), member_boxes(meta, negative_target, frames)
        yield ClipItem(
            embeddings=embeddings[frames.start : frames.stop],
            sentence=expression["text"],
            negative=negative_text,
            boxes=boxes,
            valid=valid,
            negative_boxes=negative_boxes,
            negative_valid=negative_valid,
            same_video=bool(others),
            input_size=input_size,
            members=members[0],
            members_valid=members[1],
            negative_members=negative_members[0],
            negative_members_valid=negative_members[1],
            annotated=np.array([bool(annotated[t]) for t in frames]),
            pixels=None if pixels is None else pixels[frames.start : frames.stop],
            previous=embeddings[max(frames.start - 1, 0)],
        )


def joined_shard_samples(
    pair: ShardPair, with_images: bool = False, keys: Container[str] | None = None
) -> Iterator[tuple[ShardSample, np.ndarray, tuple[int, int]]]:
    """(frame shard sample, embeddings (T, C, g, g), SAM input size) for each sample of a shard pair; the
    sample's frames are read only ``with_images``, and with ``keys`` only for the samples of those keys."""
    embedded = read_embedding_shard(pair.embeddings)
    for sample in read_shard(pair.frames, with_images=with_images, keys=keys):
        key, embedding_meta, array = next(embedded, (None, None, None))
        if key != sample.key:
            raise DataError(f"{pair.embeddings}: sample {key} does not match frame shard sample {sample.key}")
        yield sample, array, tuple(embedding_meta["input_size"])


def sample_pixels(sample: ShardSample, pixel_size: int | None) -> np.ndarray | None:
    """(T, 3, S, S) uint8: the sample's frames resized for a generator that reads pixels; None without ``pixel_size``."""
    if pixel_size is None:
        return None
    return np.stack([resized_pixels(sample.frame(t), pixel_size) for t in range(len(sample.meta["frame_names"]))])


def metadata_of(pairs: list[ShardPair]) -> list[dict[str, Any]]:
    """The frame metadata of every sample (cheap: JSON members only)."""
    return [sample.meta for pair in pairs for sample in read_shard(pair.frames, with_images=False)]


class ClipSource:
    """The training items of a split (``clip_refs``), dealt to ranks clip by clip: each epoch orders the samples at
    random (the epoch's seed, the same on every rank), lists their items in that order and cuts the list into
    ``world`` consecutive parts of equal size (within one item). An epoch thus shows every item exactly once across
    the ranks, whatever the number of shards and workers, and a rank reads only its parts' samples (one sample may
    be shared by two ranks). With ``pixel_size``, each clip's frames too (for a generator that reads pixels)."""

    def __init__(self, pairs: list[ShardPair], clip_len: int, rank: int = 0, world: int = 1, pixel_size: int | None = None) -> None:
        self.pairs = pairs
        self.clip_len = clip_len
        self.rank, self.world = rank, world
        self.pixel_size = pixel_size
        metas = metadata_of(pairs)
        self.refs = sorted(ref for meta in metas for ref in clip_refs(meta, clip_len))
        self.sentences = sorted({e["text"] for meta in metas for e in referring_expressions(meta)})
        if len(self.refs) < world:
            raise DataError(f"{len(self.refs)} training clips for {world} workers: every worker needs one; lower train.num_workers")

    @property
    def count(self) -> int:
        """How many items this rank trains on per epoch."""
        return self._end(self.rank + 1) - self._end(self.rank)

    def steps(self, batch_size: int) -> int:
        """Steps per epoch, the same on every rank (DDP keeps them in lock-step): the largest rank's full batches."""
        return math.ceil(math.ceil(len(self.refs) / self.world) / batch_size)

    def epoch_refs(self, seed: int) -> list[ClipRef]:
        """This rank's items in the epoch of ``seed``."""
        keys = sorted({ref.key for ref in self.refs})
        random.Random(seed).shuffle(keys)
        position = {key: index for index, key in enumerate(keys)}
        order = sorted(self.refs, key=lambda ref: (position[ref.key], ref))
        return order[self._end(self.rank) : self._end(self.rank + 1)]

    def _end(self, rank: int) -> int:
        """Where the part of ranks before ``rank`` ends in an epoch's list of items."""
        return rank * len(self.refs) // self.world

    def items(self, seed: int, shuffle_buffer: int = 256) -> Iterator[ClipItem]:
        """Stream this rank's items of the epoch of ``seed``: shard order and items shuffled (per rank)."""
        wanted = set(self.epoch_refs(seed))
        keys = {ref.key for ref in wanted}
        rng = random.Random(f"{seed}/{self.rank}")
        pairs = list(self.pairs)
        rng.shuffle(pairs)
        buffer: list[ClipItem] = []
        for pair in pairs:
            for sample, embeddings, input_size in joined_shard_samples(pair, with_images=self.pixel_size is not None, keys=keys):
                meta = sample.meta
                if meta["key"] not in keys:
                    continue
                pixels = sample_pixels(sample, self.pixel_size)
                own = {e["text"] for e in meta["expressions"]}
                others = [s for s in self.sentences if s not in own]
                for item in sample_items(meta, embeddings, input_size, self.clip_len, rng, others, wanted, pixels):
                    buffer.append(item)
                    if len(buffer) >= shuffle_buffer:
                        yield buffer.pop(rng.randrange(len(buffer)))
        rng.shuffle(buffer)
        yield from buffer


def collate(items: list[ClipItem]) -> ClipBatch:
    """Stack items into a ``ClipBatch`` (embeddings to float32)."""

    def stack(name: str) -> torch.Tensor:
        return torch.from_numpy(np.stack([getattr(item, name) for item in items]))

    width = max(max(item.members.shape[1], item.negative_members.shape[1]) for item in items)

    def padded(name: str) -> torch.Tensor:
        """Member arrays (T, M, ...) padded with zeros (invalid members) to ``width`` members, then stacked."""
        arrays = [getattr(item, name) for item in items]
        return torch.from_numpy(np.stack([np.pad(a, [(0, 0), (0, width - a.shape[1])] + [(0, 0)] * (a.ndim - 2)) for a in arrays]))

    return ClipBatch(
        embeddings=stack("embeddings").float(),
        sentences=[item.sentence for item in items],
        negatives=[item.negative for item in items],
        boxes=stack("boxes"),
        valid=stack("valid"),
        negative_boxes=stack("negative_boxes"),
        negative_valid=stack("negative_valid"),
        same_video=torch.tensor([item.same_video for item in items]),
        input_sizes=torch.tensor([item.input_size for item in items]),
        members=padded("members"),
        members_valid=padded("members_valid"),
        negative_members=padded("negative_members"),
        negative_members_valid=padded("negative_members_valid"),
        annotated=stack("annotated"),
        pixels=None if items[0].pixels is None else stack("pixels"),
        previous=None if items[0].previous is None else stack("previous").float(),
    )


def batch_sizes(count: int, batch_size: int, steps: int) -> list[int]:
    """Sizes of ``steps`` batches that hold ``count`` items: full batches first, then smaller ones, one item at least
    in each (fewer items than steps happens only with batch size 1, to a rank one item short: ``batches`` pads)."""
    sizes = []
    left = max(count, steps)
    for step in range(steps):
        sizes.append(min(batch_size, left - (steps - step - 1)))
        left -= sizes[-1]
    return sizes


def batches(items: Iterator[ClipItem], count: int, batch_size: int, steps: int) -> Iterator[ClipBatch]:
    """The ``count`` items as exactly ``steps`` batches (``batch_sizes``): equal step counts keep DDP ranks in
    lock-step, and no item is left out. A rank whose items ran out repeats its first item."""
    source = iter(items)
    padding: list[ClipItem] = []
    for size in batch_sizes(count, batch_size, steps):
        chunk = list(itertools.islice(source, size)) or padding
        padding = padding or chunk[:1]
        yield collate(chunk)
