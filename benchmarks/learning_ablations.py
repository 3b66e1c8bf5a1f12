"""What limits learning on RefShapes: one change at a time from ``conf/demo.yaml``, each trained and scored on the same
held-out videos.

    python benchmarks/learning_ablations.py                                   # every variant: seed 1000, 400 videos
    python benchmarks/learning_ablations.py --variants default,pixels --threads 1

Each variant generates the same RefShapes set (``--seed``, 10% held out), shards and embeds it in this process, trains
the generator with the training loop (one process) and scores the held-out videos as ``benchmarks/refshapes_learning.py``
does (box IoU of the top box over the frames where the object is present, averaged per expression). The variants:
the loss terms' weights (selection, deep supervision, confidence), the learning rate, the decoder's width, the clip
length, the features (``tiny-d0``: the random SAM without its transformer blocks; ``pixels``: a control, not a
model, where the embedding is the normalised frame pooled to the embedding grid, each cell's 4 x 4 sub-cell colours
as 48 channels, zero-padded to the SAM's width), and the motion path (the visual projection reading a 3 x 3 or 5 x 5
neighbourhood, or a local correlation with frame t-1 of radius 1 or 2). Ends with one Markdown table, values in %.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from learning import (  # benchmarks/, the script's folder
    PlainSession,
    model_box_iou,
    prepare_refshapes,
    refshapes_parser,
    sentence_blind_box_iou,
    work_config,
)
from torch import nn

from groprompt.config import Config
from groprompt.data.refshapes import RefShapesSpec
from groprompt.models.sam import FrozenSam
from groprompt.training.loop import run_training

VARIANTS: dict[str, list[str]] = {
    "default": [],
    "select-0": ["loss.lambda_select=0"],
    "aux-0": ["loss.lambda_aux=0"],
    "conf-3": ["loss.lambda_conf=3"],
    "lr-5e-4": ["train.lr=5e-4"],
    "lr-5e-3": ["train.lr=5e-3"],
    "d_model-128": ["model.d_model=128", "model.ffn_dim=256"],
    "clip-4": ["data.clip_len=4", "train.batch_size=8"],  # the same frames per step and steps
    "sam-tiny-d0": ["model.sam=tiny-d0"],
    "pixels": [],
    "visual-kernel-3": ["model.visual_kernel=3"],  # the motion path: each token sees its neighbours' differences
    "visual-kernel-5": ["model.visual_kernel=5"],
    "correlation-1": ["model.motion_correlation=1"],  # ... or its correlation with frame t-1's tokens around it
    "correlation-2": ["model.motion_correlation=2"],
}
PIXEL_CONTROL = "pixels"
SUB_CELLS = 4  # each embedding cell described by its 4 x 4 sub-cells' mean colours


class PooledPixels(nn.Module):
    """The feature control: normalised pixels (B, 3, S, S) average-pooled to a (grid * 4)-square, each 4 x 4 block
    folded into the channels (48) and zero-padded to ``channels``: an embedding that knows colours and layout only."""

    def __init__(self, img_size: int, grid: int, channels: int) -> None:
        super().__init__()
        self.img_size, self.grid, self.channels = img_size, grid, channels  # img_size: as SAM's encoder names it

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        pooled = F.adaptive_avg_pool2d(inputs, self.grid * SUB_CELLS)
        folded = F.pixel_unshuffle(pooled, SUB_CELLS)
        return F.pad(folded, (0, 0, 0, 0, 0, self.channels - folded.shape[1]))


def embedding_sam(config: Config, variant: str) -> FrozenSam:
    """The SAM whose image encoder embeds the variant's frames (the pixel control's encoder swapped in)."""
    sam = FrozenSam.from_name(config.model.sam, seed=config.model.sam_seed)
    if variant == PIXEL_CONTROL:
        sam.sam.image_encoder = PooledPixels(sam.image_size, sam.embed_grid, sam.embed_dim)
    return sam


def main(argv: list[str] | None = None) -> int:
    parser = refshapes_parser(__doc__, seed=1000, videos=400)
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, among {', '.join(VARIANTS)}")
    args = parser.parse_args(argv)
    chosen = args.variants.split(",")
    unknown = [name for name in chosen if name not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    rows: dict[str, dict[str, float]] = {}
    for name in chosen:
        with tempfile.TemporaryDirectory() as folder:
            config = work_config(Path(folder), args.threads, args.overrides + VARIANTS[name])
            spec = RefShapesSpec(videos=args.videos, frames=args.frames, size=config.data.max_side, seed=args.seed)
            prepare_refshapes(config, spec, valid_fraction=0.1, sam=embedding_sam(config, name))
            session = PlainSession()
            run_training(config, session, run_id=None)
            assert session.model is not None
            rows[name] = model_box_iou(config, session.model)
            if "sentence-blind" not in rows:
                rows["sentence-blind"] = sentence_blind_box_iou(config)
            epochs = ", ".join(f"{100 * r['val_box_iou']:.1f}" for r in session.reports)
            print(
                f"{name}: held-out {100 * rows[name]['all']:.1f}, val_box_iou per epoch {epochs} ({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
    kinds = sorted(rows["sentence-blind"], key=lambda k: (k == "all", k))
    print(f"\nHeld-out box IoU (%), RefShapes seed {args.seed}, {args.videos} videos, {time.perf_counter() - started:.0f} s in all\n")
    print("| variant | " + " | ".join(kinds) + " |")
    print("|---|" + "---:|" * len(kinds))
    for name, scores in rows.items():
        print(f"| {name} | " + " | ".join(f"{100 * scores[kind]:.1f}" for kind in kinds) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
