"""Frame shards paired with the embedding shards computed from them: the pairing, its integrity checks, and
samples read joined by key."""

from __future__ import annotations

from collections.abc import Container, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from groprompt.config import DataConfig
from groprompt.data.embeddings import FrameEncoder, check_embeddings, embedding_identity, read_embedding_shard
from groprompt.data.manifest import MANIFEST, read_manifest
from groprompt.data.shards import ShardSample, check_shard, read_shard
from groprompt.errors import DataError
from groprompt.files import Location, location, sha256_file


@dataclass(frozen=True)
class ShardPair:
    """A frame shard and the embedding shard computed from it."""

    frames: Location
    embeddings: Location


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


def metadata_of(pairs: list[ShardPair]) -> list[dict[str, Any]]:
    """The frame metadata of every sample (cheap: JSON members only)."""
    return [sample.meta for pair in pairs for sample in read_shard(pair.frames, with_images=False)]
