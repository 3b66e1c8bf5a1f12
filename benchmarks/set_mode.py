"""The set mode against the one-box mode on RefShapes' multi-object sentences, side by side on held-out videos.

    python benchmarks/set_mode.py                                 # seed 1000, 400 videos of 8 frames
    python benchmarks/set_mode.py --videos 120 train.epochs=2

Generates one RefShapes set with a sentence about several objects and one about an object that leaves the frame in
every video where such a sentence exists (``--multi-object-share``, ``--leaves-frame-share``), shards and embeds it
in this process (tiny random-weight SAM), and trains ``conf/demo.yaml``'s generator twice from the same
initialisation and data order on ``train-fit`` (validating on ``train-holdout``, held-out training videos): the
paper's one-box mode (the union box of a sentence's objects) and the set mode (``model.multi_object=true``: a box per
object, Hungarian-matched). The set mode's confidence threshold (``model.set_score_threshold``) is chosen on
``train-holdout`` among ``THRESHOLDS`` (the highest J there), never on the reported split. Both modes are scored on
RefShapes' ``valid`` videos, which training never sees, by the evaluation's protocol with the boxes filled as masks
(``--segmentor box``): J against the union of the referred objects' masks, and box IoU of the box around the kept
boxes against the union box. The sentence-blind reference (per frame, one present object's ground-truth box,
whatever the sentence says) is scored the same way. Ends with one Markdown table, values in %.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch
from learning import PlainSession, box_mask_scores, prepare_refshapes, refshapes_parser, work_config  # benchmarks/, the script's folder

from groprompt.config import Config, replace
from groprompt.data.refshapes import RefShapesSpec
from groprompt.evaluation.box_sources import ModelBoxes, SentenceBlindBoxes
from groprompt.models.frozen import build_frozen
from groprompt.models.groprompt import GroPrompt
from groprompt.training.loop import run_training

MODES = {"one box": False, "set": True}
THRESHOLDS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5)
TEST_SPLIT = "valid"


def chosen_threshold(config: Config, model: GroPrompt) -> float:
    """The set-mode threshold with the highest J on ``config.data.val_split`` (held-out training videos)."""
    frozen = build_frozen(config.model)
    scores = {}
    for threshold in THRESHOLDS:
        model.set_threshold = threshold
        scores[threshold] = box_mask_scores(config, ModelBoxes(model, frozen))["all"]["J"]
    print("set mode, J on " + config.data.val_split + ": " + ", ".join(f"{t}: {100 * j:.1f}" for t, j in scores.items()), flush=True)
    return max(scores, key=lambda t: scores[t])


def main(argv: list[str] | None = None) -> int:
    parser = refshapes_parser(__doc__, seed=1000, videos=400)
    parser.add_argument("--multi-object-share", type=float, default=1.0)
    parser.add_argument("--leaves-frame-share", type=float, default=1.0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    scores: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        config = work_config(work, args.threads, ["data.split=train-fit", "data.val_split=train-holdout", *args.overrides])
        test = replace(config, **{"data.val_split": TEST_SPLIT})
        spec = RefShapesSpec(
            videos=args.videos,
            frames=args.frames,
            size=config.data.max_side,
            seed=args.seed,
            multi_object_share=args.multi_object_share,
            leaves_frame_share=args.leaves_frame_share,
        )
        splits = prepare_refshapes(config, spec, valid_fraction=0.1, also=(TEST_SPLIT,))
        print(
            f"RefShapes seed {args.seed}: {len(splits['train'])} training (train-fit and train-holdout) / {len(splits['valid'])} "
            f"held-out videos of {args.frames} "
            f"frames; {config.train.epochs} epoch(s), batch {config.train.batch_size}, lr {config.train.lr}, {args.threads} threads",
            flush=True,
        )
        for name, multi_object in MODES.items():
            variant = replace(config, **{"model.multi_object": multi_object})
            session = PlainSession()
            run_training(variant, session, run_id=None)
            assert session.model is not None
            if multi_object:
                session.model.set_threshold = chosen_threshold(variant, session.model)
                name = f"set (threshold {session.model.set_threshold})"
            scores[name] = box_mask_scores(
                replace(variant, **{"data.val_split": TEST_SPLIT}), ModelBoxes(session.model, build_frozen(variant.model))
            )
            print(f"{name}: held-out J {100 * scores[name]['all']['J']:.1f} ({time.perf_counter() - started:.0f} s)", flush=True)
        scores["sentence-blind"] = box_mask_scores(test, SentenceBlindBoxes())
    print(f"\nHeld-out J / box IoU (%), boxes filled as masks, {time.perf_counter() - started:.0f} s in all, generation included\n")
    print("| expression type | " + " | ".join(scores) + " |")
    print("|---|" + "---:|" * len(scores))
    for kind in sorted(scores["one box"], key=lambda k: (k == "all", k)):
        cells = [f"{100 * s[kind]['J']:.1f} / {100 * s[kind]['box_iou']:.1f}" for s in scores.values()]
        print(f"| {kind} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
