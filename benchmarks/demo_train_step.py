"""The demo's training step: clips/s of the step at the demo's earlier settings against its current ones, in one run.

    python benchmarks/demo_train_step.py            # threads: 1, as each of the demo's 2 Ray Train workers on 2 cores

Both settings run the identical training step (proposal generator + ModalCon head, every loss, AdamW, gradient
clipping) on the same RefShapes clips fed from precomputed tiny-SAM embeddings, with this checkout's code; they
alternate, each timed after a warm-up step, and the best of the rounds counts. ``BEFORE`` holds the values
``conf/demo.yaml`` had before the demo was resized (a 128-wide decoder on 4-frame clips of 8); a frame is one SAM
embedding through the step, so frames/s compares the work per second where clips differ in length.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import torch
from train_throughput import clip_items, precomputed, prepare  # benchmarks/, the script's folder

from groprompt.config import Config, load_config
from groprompt.data.batches import collate
from groprompt.data.clips import ClipItem
from groprompt.data.embeddings import embed_shard
from groprompt.files import sha256_file
from groprompt.models.frozen import FrozenEncoders, build_frozen
from groprompt.models.groprompt import build_model
from groprompt.training.loop import build_optimizer, train_epoch
from groprompt.training.step import TrainingStep

REPO = Path(__file__).resolve().parents[1]
BEFORE = ["model.d_model=128", "model.ffn_dim=256", "model.num_heads=4", "data.clip_len=4", "train.batch_size=8"]


def embedded_shard(frozen: FrozenEncoders, folder: Path) -> tuple[Path, Path]:
    """A frame shard of a few RefShapes videos and its tiny-SAM embedding shard."""
    shard = prepare(folder, videos=8, frames=8)
    record, _ = embed_shard(frozen.sam, shard, sha256_file(shard), folder, batch_size=8)
    return shard, folder / record["shard"]


def clips_per_second(config: Config, frozen: FrozenEncoders, items: list[ClipItem], steps: int, seed: int) -> float:
    """Clips per second of ``steps`` training steps after a warm-up step (collation included)."""
    torch.manual_seed(0)
    model = build_model(config.model, frozen)
    optimizer, scheduler = build_optimizer(model, config.train, steps + 1)
    rng = random.Random(seed)
    size = config.train.batch_size
    batches = [collate(rng.sample(items, size)) for _ in range(steps + 1)]
    train_epoch(TrainingStep(model), frozen, batches[:1], optimizer, scheduler, config)
    started = time.perf_counter()
    train_epoch(TrainingStep(model), frozen, batches[1:], optimizer, scheduler, config)
    return steps * size / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per pass")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the demo: 1 per worker)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = {
        "before": load_config([REPO / "conf" / "demo.yaml"], BEFORE),
        "now": load_config([REPO / "conf" / "demo.yaml"]),
    }
    frozen = build_frozen(settings["now"].model)
    best = dict.fromkeys(settings, 0.0)
    with tempfile.TemporaryDirectory() as folder:
        shard, embedded = embedded_shard(frozen, Path(folder))
        items = {name: list(clip_items(precomputed(shard, embedded), config.data.clip_len)) for name, config in settings.items()}
        for round_ in range(args.rounds):
            for name, config in settings.items():
                best[name] = max(best[name], clips_per_second(config, frozen, items[name], args.steps, seed=round_))
    print(f"demo training step, tiny SAM, best of {args.rounds} x {args.steps} steps, {args.threads} thread(s)")
    for name, config in settings.items():
        model, data = config.model, config.data
        print(
            f"  {name:6s}: d_model {model.d_model}, ffn {model.ffn_dim}, {model.num_heads} heads, clips of {data.clip_len} frames, "
            f"batch {config.train.batch_size}: {best[name]:6.2f} clips/s, {best[name] * data.clip_len:6.1f} frames/s"
        )
    print(f"  ratio now/before: {best['now'] / best['before']:.2f}x clips/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
