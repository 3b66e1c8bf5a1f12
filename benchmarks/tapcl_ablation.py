"""TAP-CL ablation: L_box only against L_box + L_contra (lambda_f 0.01, lambda_v 0.1), several seeds, on RefShapes.

    python benchmarks/tapcl_ablation.py                       # 3 seeds, 240 training videos, 2 epochs
    python benchmarks/tapcl_ablation.py --seeds 5 --videos 400 train.epochs=3

Runs the training loop (``groprompt.training.loop.run_training``) without Ray, with a plain session, on a RefShapes set
sharded and embedded by the library functions (tiny random-weight SAM, ``conf/demo.yaml``'s model). Each seed trains
both variants from the same initialisation and data order; the held-out box IoU (top box over the frames where the
object is present, averaged per expression as the evaluation does) is printed per expression type as mean and standard
deviation over seeds, beside the per-seed difference (contrastive minus box only) with its spread.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
from learning import PlainSession, model_box_iou, prepare_refshapes, work_config  # benchmarks/, the script's folder

from groprompt.config import replace
from groprompt.data.refshapes import RefShapesSpec
from groprompt.training.loop import run_training

METRIC = "val_box_iou"
VARIANTS = {
    "L_box only": {"loss.textcon": False, "loss.modalcon": False},
    "L_box + L_contra": {"loss.lambda_f": 0.01, "loss.lambda_v": 0.1},
}


def spread(values: list[float]) -> str:
    """``mean ± sd`` in percent."""
    sd = statistics.stdev(values) if len(values) > 1 else float("nan")
    return f"{100 * statistics.fmean(values):5.1f} ± {100 * sd:4.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=240, help="RefShapes videos to generate (about 10%% held out)")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("overrides", nargs="*", help="key=value configuration overrides (on conf/demo.yaml)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    results: dict[str, dict[str, list[float]]] = {name: defaultdict(list) for name in VARIANTS}
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        config = work_config(work, args.threads, args.overrides)
        spec = RefShapesSpec(videos=args.videos, frames=args.frames, size=config.data.max_side, seed=1000)
        splits = prepare_refshapes(config, spec, valid_fraction=0.1)
        print(
            f"TAP-CL ablation: {len(splits['train'])} training / {len(splits['valid'])} held-out RefShapes videos of {args.frames} "
            f"frames, {config.train.epochs} epochs, batch {config.train.batch_size}, lr {config.train.lr}, clip_len "
            f"{config.data.clip_len}, d_model {config.model.d_model}, {args.seeds} seeds, {args.threads} threads",
            flush=True,
        )
        for seed in range(args.seeds):
            for name, changes in VARIANTS.items():
                variant = replace(config, **changes, **{"train.seed": seed})
                session = PlainSession()
                run_training(variant, session, run_id=None)
                held_out = model_box_iou(variant, session.model)
                for kind, value in held_out.items():
                    results[name][kind].append(value)
                print(
                    f"  seed {seed} {name:17s} held-out box IoU {100 * held_out['all']:5.1f}  (val_box_iou per epoch: "
                    f"{', '.join(f'{r[METRIC]:.3f}' for r in session.reports)}; {time.perf_counter() - started:.0f} s)",
                    flush=True,
                )
    box, contra = results.values()
    print("\nHeld-out box IoU (%), mean ± sd over seeds; difference = (L_box + L_contra) - (L_box only), paired by seed")
    print(f"| {'expression type':17s} | {'L_box only':13s} | {'L_box + L_contra':16s} | {'difference':13s} |")
    print(f"|{'-' * 19}|{'-' * 15}|{'-' * 18}|{'-' * 15}|")
    for kind in sorted(box, key=lambda k: (k == "all", k)):
        difference = [c - b for b, c in zip(box[kind], contra[kind])]
        print(f"| {kind:17s} | {spread(box[kind]):13s} | {spread(contra[kind]):16s} | {spread(difference):13s} |")
    print(f"({time.perf_counter() - started:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
