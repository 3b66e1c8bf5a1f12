"""Training throughput: the loop fed by precomputed SAM embeddings against the same loop encoding frames on the fly.

    python benchmarks/train_throughput.py                   # tiny SAM
    python benchmarks/train_throughput.py --sam vit_b       # random ViT-B weights (about 15-18 s a frame on 2 cores)

Both paths run the identical training step (proposal generator + ModalCon head, all losses, AdamW) on the
same RefShapes clips; path (b) additionally decodes the JPEG frames of every clip in the batch and runs the
frozen SAM image encoder on them, as a training loop without the embed stage must. Paths alternate, each timed after a
warm-up step; the best of the rounds counts. This is the method's efficiency claim made measurable.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from groprompt.config import LossConfig, load_config
from groprompt.data.batches import collate
from groprompt.data.clips import ClipItem, clip_refs, sample_items
from groprompt.data.embeddings import embed_shard, read_embedding_shard
from groprompt.data.formats import read_videos
from groprompt.data.refshapes import RefShapesSpec, write_refshapes
from groprompt.data.shards import ShardSettings, plan_shards, read_shard, write_shard
from groprompt.models.frozen import build_frozen
from groprompt.models.groprompt import build_model
from groprompt.training.step import TrainingStep

REPO = Path(__file__).resolve().parents[1]


def prepare(folder: Path, videos: int, frames: int) -> Path:
    """RefShapes frame shards (one shard) of a few videos."""
    write_refshapes(folder / "data", RefShapesSpec(videos=videos, frames=frames, size=256, seed=0), valid_fraction=0.0, progress=False)
    records = list(read_videos("refshapes", folder / "data", "train", with_boxes=False))
    plan = plan_shards(records, ShardSettings(window=frames, max_side=256))[0]
    (folder / "shards").mkdir()
    write_shard(plan, folder / "shards", ShardSettings(window=frames, max_side=256))
    return folder / "shards" / plan.name


def clip_items(samples: Iterator[tuple[dict, np.ndarray, tuple[int, int]]], clip_len: int) -> Iterator[ClipItem]:
    rng = random.Random(0)
    for meta, embeddings, input_size in samples:
        yield from sample_items(meta, embeddings, input_size, clip_len, rng, ["a dog"], set(clip_refs(meta, clip_len)))


def precomputed(shard: Path, embedded: Path) -> Iterator[tuple[dict, np.ndarray, tuple[int, int]]]:
    """(a) the training data path: metadata joined with stored embeddings, no image decoding."""
    stored = read_embedding_shard(embedded)
    for sample in read_shard(shard, with_images=False):
        _, meta, array = next(stored)
        yield sample.meta, array, tuple(meta["input_size"])


class FrameEncoder:
    """(b)'s extra work per step: decode each clip's JPEG frames and run the frozen SAM image encoder on them."""

    def __init__(self, shard: Path, sam: torch.nn.Module) -> None:
        self.jpegs = [(sample, i) for sample in read_shard(shard) for i in range(len(sample.frames))]
        self.sam = sam
        self.next = 0

    def __call__(self, frames: int) -> None:
        decoded = []
        for _ in range(frames):
            sample, i = self.jpegs[self.next % len(self.jpegs)]
            decoded.append(sample.frame(i))
            self.next += 1
        self.sam.encode(decoded)


def timed_pass(make_items, training_step, frozen, optimizer, batch_size: int, steps: int, encode: FrameEncoder | None) -> float:
    """Clips per second over ``steps`` training steps after one warm-up step (data production included); ``training_step`` is the
    module whose forward gives the loss terms (``TrainingStep``)."""
    items = make_items()
    clips, started = 0, None
    for step in range(steps + 1):
        batch = collate([next(items) for _ in range(batch_size)])
        if encode is not None:
            encode(batch.embeddings.shape[0] * batch.embeddings.shape[1])
        terms = training_step(frozen, batch, LossConfig())
        optimizer.zero_grad()
        terms["total"].backward()
        optimizer.step()
        if step == 0:
            started = time.perf_counter()
        else:
            clips += batch_size
    return clips / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sam", default="tiny")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per pass (default: 8 tiny, 1 ViT)")
    parser.add_argument("--rounds", type=int, default=None, help="alternating rounds (default: 3 tiny, 1 ViT)")
    parser.add_argument("--batch-size", type=int, default=None, help="clips per step (default: 4 tiny, 1 ViT)")
    parser.add_argument("--clip-len", type=int, default=None, help="frames per clip (default: 4 tiny, 2 ViT)")
    args = parser.parse_args(argv)
    vit = args.sam.startswith("vit")
    steps, rounds = args.steps or (1 if vit else 8), args.rounds or (1 if vit else 3)
    batch_size, clip_len = args.batch_size or (1 if vit else 4), args.clip_len or (2 if vit else 4)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    torch.manual_seed(0)
    config = load_config([REPO / "conf" / "tiny.yaml"], [f"model.sam={args.sam}", "model.allow_random_weights=true"])
    frozen = build_frozen(config.model)
    model = build_model(config.model, frozen)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    with tempfile.TemporaryDirectory() as folder:
        videos, frames = (2, clip_len) if vit else (6, 8)
        shard = prepare(Path(folder), videos, frames)
        started = time.perf_counter()
        record, _ = embed_shard(frozen.sam, shard, _sha(shard), Path(folder), batch_size=4 if not vit else 1)
        precompute_seconds = time.perf_counter() - started
        embedded = Path(folder) / record["shard"]
        items = lambda: clip_items(precomputed(shard, embedded), clip_len)  # noqa: E731
        encoder = FrameEncoder(shard, frozen.sam)
        best = {"precomputed": 0.0, "on the fly": 0.0}
        for _ in range(rounds):
            best["precomputed"] = max(
                best["precomputed"], timed_pass(items, TrainingStep(model), frozen, optimizer, batch_size, steps, None)
            )
            best["on the fly"] = max(
                best["on the fly"], timed_pass(items, TrainingStep(model), frozen, optimizer, batch_size, steps, encoder)
            )
    print(
        f"training throughput, SAM {args.sam} ({frozen.sam.weights_id}), {steps} steps x {batch_size} clips x {clip_len} frames, "
        f"best of {rounds}, {torch.get_num_threads()} threads"
    )
    print(f"  (a) precomputed embeddings : {best['precomputed']:8.3f} clips/s")
    print(f"  (b) SAM encoder on the fly : {best['on the fly']:8.3f} clips/s")
    print(f"  ratio (a)/(b)              : {best['precomputed'] / best['on the fly']:8.1f}x")
    print(f"  (one-off precompute of {record['n_frames']} frames: {precompute_seconds:.1f} s)")
    return 0


def _sha(path: Path) -> str:
    from groprompt.files import sha256_file

    return sha256_file(path)


if __name__ == "__main__":
    sys.exit(main())
