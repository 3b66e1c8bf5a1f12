"""Training clips: an epoch deals every clip to exactly one worker; a sentence about several objects carries each
object's box."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from groprompt.config import DataConfig
from groprompt.data.batches import batches, collate
from groprompt.data.clips import ClipSource
from groprompt.data.formats import read_videos
from groprompt.data.records import Video
from groprompt.data.refshapes import RefShapesSpec, write_refshapes
from groprompt.data.shard_pairs import ShardPair, joined_shard_samples, shard_pairs
from groprompt.models.sam import FrozenSam
from tests.helpers import shard_and_embed


@pytest.fixture(scope="module")
def five_shards(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[ShardPair], list[Video]]:
    """Five 4-frame RefShapes training videos, one shard each (window 4: one sample per video), embedded."""
    root = tmp_path_factory.mktemp("clips")
    write_refshapes(root / "data", RefShapesSpec(videos=5, frames=4, size=64, seed=3), valid_fraction=0.0, progress=False)
    sam = FrozenSam.from_name("tiny", seed=0)
    shard_and_embed(root / "data", "train", root / "shards", root / "embeddings", sam, shard_bytes=1)
    data = DataConfig(shards=str(root / "shards"), embeddings=str(root / "embeddings"))
    videos = sorted(read_videos("refshapes", root / "data", "train"), key=lambda video: video.video_id)
    return shard_pairs(data, "train", sam), videos


def frame_lookup(pairs: list[ShardPair]) -> dict[bytes, tuple[str, int]]:
    """(video, frame index) of each embedded frame, by its embedding's float32 bytes (how a batch carries it)."""
    lookup = {}
    for pair in pairs:
        for sample, embeddings, _ in joined_shard_samples(pair):
            for t in range(len(embeddings)):
                lookup[torch.from_numpy(embeddings[t]).float().numpy().tobytes()] = (sample.meta["video_id"], t)
    return lookup


def expected_items(videos: list[Video], clip_len: int) -> Counter:
    """(video, sentence, first frame) of every clip of ``clip_len`` frames and every sentence whose object has a box
    in one of its frames: counted from the videos' own records, not from the shards."""
    items: Counter = Counter()
    for video in videos:
        for start in range(0, len(video.frame_names) - clip_len + 1, clip_len):
            for expression in video.expressions:
                boxes = video.boxes.get(expression.obj_id, ())
                if any(boxes[t] is not None for t in range(start, start + clip_len)):
                    items[(video.video_id, expression.text, start)] += 1
    return items


@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("shards", [1, 2, 3, 4, 5])
def test_an_epoch_shows_every_clip_once_across_the_workers(five_shards, shards: int, world: int) -> None:
    pairs, videos = five_shards
    assert len(pairs) == 5
    used = videos[:shards]  # the shards hold the videos in id order, one each
    clip_len, batch_size = 2, 3
    frame_of = frame_lookup(pairs[:shards])
    for epoch in range(2):
        seen: Counter = Counter()
        steps = set()
        for rank in range(world):
            source = ClipSource(pairs[:shards], clip_len, rank, world)
            batches_of_rank = list(batches(source.items(seed=epoch), source.count, batch_size, source.steps(batch_size)))
            steps.add(len(batches_of_rank))
            for batch in batches_of_rank:
                assert 1 <= len(batch.sentences) <= batch_size
                for row, sentence in enumerate(batch.sentences):
                    video, start = frame_of[batch.embeddings[row, 0].numpy().tobytes()]
                    seen[(video, sentence, start)] += 1
                    assert frame_of[batch.previous[row].numpy().tobytes()] == (video, max(start - 1, 0))  # the frame before
        assert len(steps) == 1  # every rank runs the same number of steps
        assert seen == expected_items(used, clip_len)


def hand_box(mask: np.ndarray) -> list[float] | None:
    """Normalised cxcywh of a boolean mask's tight box (exclusive right/bottom edges), by hand; None when empty."""
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return None
    h, w = mask.shape
    x1, y1, x2, y2 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    return [(x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h]


def test_a_sentence_about_several_objects_carries_each_objects_box(tmp_path: Path) -> None:
    write_refshapes(
        tmp_path / "data", RefShapesSpec(videos=3, frames=4, size=64, seed=5, multi_object_share=1.0), valid_fraction=0.0, progress=False
    )
    sam = FrozenSam.from_name("tiny", seed=0)
    shard_and_embed(tmp_path / "data", "train", tmp_path / "shards", tmp_path / "embeddings", sam)
    pairs = shard_pairs(DataConfig(shards=str(tmp_path / "shards"), embeddings=str(tmp_path / "embeddings")), "train", sam)
    videos = {video.video_id: video for video in read_videos("refshapes", tmp_path / "data", "train")}
    frame_of = frame_lookup(pairs)
    source = ClipSource(pairs, clip_len=2)
    checked = 0
    for item in source.items(seed=0):
        video_id, start = frame_of[torch.from_numpy(item.embeddings[0]).float().numpy().tobytes()]
        video = videos[video_id]
        target = next(e.obj_id for e in video.expressions if e.text == item.sentence)
        objects = video.groups.get(target, (target,))
        assert item.members.shape == (2, len(objects), 4) and item.annotated.all()
        for t in range(2):
            ids = video.masks.read(start + t)
            for m, obj in enumerate(objects):
                box = hand_box(ids == obj)
                assert bool(item.members_valid[t, m]) == (box is not None)
                if box is not None:
                    assert item.members[t, m].tolist() == pytest.approx(box, abs=1e-6)
        checked += len(objects) > 1
    assert checked > 0  # some sentences name several objects
    items = list(itertools.islice(source.items(seed=0), 8))
    batch = collate(items)
    width = max(max(item.members.shape[1], item.negative_members.shape[1]) for item in items)
    assert batch.members.shape == (8, 2, width, 4) and batch.negative_members_valid.shape == (8, 2, width)
    for row, item in enumerate(items):  # each row keeps its own members; the padding is absent
        own = item.members.shape[1]
        assert torch.equal(batch.members[row, :, :own], torch.from_numpy(item.members))
        assert torch.equal(batch.members_valid[row, :, :own], torch.from_numpy(item.members_valid))
        assert not batch.members_valid[row, :, own:].any()
