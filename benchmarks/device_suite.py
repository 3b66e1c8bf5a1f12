"""Every accelerator claim of the project measured in one run, printed as one table beside its anchor.

    python benchmarks/device_suite.py                             # one GPU: ViT-B and ViT-H, about 8 minutes
    python benchmarks/device_suite.py --out work/device-suite     # also writes work/device-suite.json and .md
    python benchmarks/device_suite.py --dry-run                   # the same code paths at toy size on CPU

Rows (each measured in this run; none is a constant):
  embed   the SAM image encoder alone (frames/s) in float32, bfloat16, bfloat16+SDPA, +channels-last and
          +torch.compile (with its compile seconds), its FLOPs per frame (``FlopCounterMode``) and, on a GPU, the
          fraction of the dense bf16 ceiling reached; the embed stage's per-shard path (``embed_shard``) with the
          loader thread and without, the naive ``SamPredictor`` loop, and the stage end to end through Ray Data
          (``embed_shards`` on RefShapes frame shards written by ``shard_dataset``);
  train   clips/s of the paper-size proposal generator (conf/model/paper.yaml) fed precomputed embeddings against
          encoding frames on the fly (the pieces of ``benchmarks/train_throughput.py``);
  infer   frames/s on a long synthetic video through ``stages.infer.infer`` (Ray actors) and through its per-video
          work ``infer_video`` on the device, with peak GPU memory;
  Grounding DINO  one fine-tuning step of the base-size detector generator in bf16 (GPU only; random weights);
  segment frames/s of the HQ-SAM (ViT-B, ViT-H) and SAM 2 (Hiera-B+) segmentors through the streams evaluation and
          inference use, bf16 on the GPU, and SAM 2's GPU memory on a video 10x longer (GPU only: without one the
          same code runs at toy size and the rows read "unmeasured", the toy figures in their notes).
All weights are random: the compute (shapes, FLOPs, kernels) is the one of the released checkpoints, so speeds
carry over; masks and boxes mean nothing. Without CUDA, or with ``--dry-run``, tiny SAMs stand in for ViT-B and
ViT-H and the tiny generator for the paper's, on CPU, and GPU-only figures read "unmeasured".
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout: sibling benchmark scripts are imported, not copied

from benchmarks.embed_throughput import naive_pass  # first: it imports groprompt, which makes segment_anything importable
from benchmarks.grounding_dino_params import base_generator
from benchmarks.infer_memory import write_synthetic_mp4
from benchmarks.train_throughput import FrameEncoder, clip_items, precomputed, prepare, timed_pass
from groprompt.checkpoints import build_trained_model, random_weights
from groprompt.cluster import init_ray
from groprompt.config import Config, load_config
from groprompt.data.batches import ClipBatch
from groprompt.data.embeddings import PREFETCH_BATCHES, embed_shard
from groprompt.data.manifest import read_manifest
from groprompt.data.refshapes import RefShapesSpec, write_refshapes
from groprompt.data.shards import ShardSettings, read_shard
from groprompt.files import sha256_file
from groprompt.inference.predictor import Predictor
from groprompt.inference.queries import Query
from groprompt.inference.sources import video_source
from groprompt.inference.video import OutputOptions, infer_video
from groprompt.models.encoder_options import EncoderOptions
from groprompt.models.frozen import FrozenEncoders
from groprompt.models.groprompt import GroPrompt, build_model
from groprompt.models.modalcon import ModalConHead
from groprompt.models.sam import FrozenSam
from groprompt.models.sam2_video import Sam2Segmentor, random_sam2
from groprompt.models.sam_hq import SamHQSegmentor, random_sam_hq
from groprompt.models.segmentors import Segmentor, VideoSegmentor, build_segmentor, open_stream
from groprompt.models.text import FrozenTextEncoder
from groprompt.stages.embed import embed_shards
from groprompt.stages.infer import infer
from groprompt.stages.shard import shard_dataset
from groprompt.training.step import compute_losses

REPO = Path(__file__).resolve().parents[1]
VARIANTS: dict[str, EncoderOptions] = {
    "fp32": EncoderOptions(),
    "bf16": EncoderOptions("bfloat16"),
    "bf16+SDPA": EncoderOptions("bfloat16", sdpa=True),
    "bf16+SDPA+channels-last": EncoderOptions("bfloat16", sdpa=True, channels_last=True),
    "bf16+SDPA+compile": EncoderOptions("bfloat16", sdpa=True, compile=True),
}
STAGE_VARIANT = "bf16+SDPA"
"""The encoder options of the stage, training and inference rows (compile would add its seconds to every actor)."""

ENCODER_ANCHORS = {
    "ViT-B": "segment-anything-fast ~92 img/s (A100); target >= 400",
    "ViT-H": "segment-anything-fast ~23 img/s (A100); target >= 70",
}
STAGE_TARGET = "target >= 80% of the bare encoder"
BF16_CEILINGS = (("H100 PCIe", 756.0), ("H100", 989.0), ("H200", 989.0), ("A100", 312.0))
"""Dense bf16 tensor-core peaks in TFLOP/s from the vendors' datasheets, by device-name fragment (first match)."""
SENTENCES = ("the red square", "the moving object on the left", "the small box", "the background")
LONGER = 10  # the long video of the memory row is this many times the short one
SEGMENTOR_MODELS: dict[str, Callable[[str], Segmentor | VideoSegmentor]] = {
    "sam-hq": lambda name: SamHQSegmentor(*random_sam_hq(name)),
    "sam2": lambda name: Sam2Segmentor(*random_sam2(name)),
}
"""Segmentors with random weights by kind, from a configuration name (``SAM_HQ_CONFIGS``, ``SAM2_CONFIGS``)."""


@dataclass(frozen=True)
class Scale:
    """The sizes of one run: the full run on a GPU, or the toy dry run on CPU."""

    device: torch.device
    models: dict[str, str]  # row label -> SAM configuration
    frame_size: int  # side of the RefShapes frames
    encoder_batch: int
    measure_seconds: float  # timed calls of one encoder variant last at least this long
    stage_videos: int
    frames_per_video: int
    shards: int  # the stage's frame shards (CPU actors: one each, up to the cores)
    naive_frames: int
    generator: str  # proposal-generator size: conf/model/<generator>.yaml
    train: tuple[int, int, int, int, int, int]  # videos, frames per video, clip length, clips per step, steps, rounds
    infer_frames: int
    infer_size: int
    stage_infer_frames: int
    queries: int
    segmentors: dict[str, tuple[str, str]]  # row label -> (segmentor, configuration of its random model)
    segment_frames: int  # frames of the segmentor rows' video (the memory row's long one has LONGER times more)
    segment_size: int  # their height (16:9)


FULL = Scale(
    device=torch.device("cuda"),
    models={"ViT-B": "vit_b", "ViT-H": "vit_h"},
    frame_size=720,
    encoder_batch=8,
    measure_seconds=3.0,
    stage_videos=64,
    frames_per_video=8,
    shards=4,
    naive_frames=64,
    generator="paper",
    train=(6, 8, 4, 4, 5, 2),
    infer_frames=600,
    infer_size=512,
    stage_infer_frames=200,
    queries=2,
    segmentors={"sam-hq ViT-B": ("sam-hq", "vit_b"), "sam-hq ViT-H": ("sam-hq", "vit_h"), "sam2 Hiera-B+": ("sam2", "hiera_b+")},
    segment_frames=30,
    segment_size=720,
)
TOY = Scale(
    device=torch.device("cpu"),
    models={"ViT-B": "tiny", "ViT-H": "tiny"},
    frame_size=128,
    encoder_batch=2,
    measure_seconds=0.1,
    stage_videos=4,
    frames_per_video=4,
    shards=1,
    naive_frames=4,
    generator="tiny",
    train=(3, 4, 2, 2, 1, 2),
    infer_frames=8,
    infer_size=128,
    stage_infer_frames=6,
    queries=2,
    segmentors={"sam-hq ViT-B": ("sam-hq", "tiny"), "sam-hq ViT-H": ("sam-hq", "tiny"), "sam2 Hiera-B+": ("sam2", "tiny")},
    segment_frames=2,
    segment_size=64,
)


@dataclass
class Row:
    """One line of the table: what was measured, the figure, its anchor or target, its share of the bf16 ceiling."""

    name: str
    figure: str
    anchor: str = ""
    ceiling: str = ""
    note: str = ""


@dataclass
class Run:
    """What the sections share: the scale, a work folder, the frame shards and the measured encoder rates."""

    scale: Scale
    work: Path
    unmeasured: str  # what a GPU-only figure reads in a run without one
    ceiling_tflops: float | None
    frame_rows: list[dict[str, Any]] = field(default_factory=list)
    rates: dict[tuple[str, str], float] = field(default_factory=dict)

    @property
    def frames_dir(self) -> Path:
        return self.work / "frames"

    def ceiling_fraction(self, flop_per_s: float) -> str:
        """The share of the device's dense bf16 peak, or why there is none."""
        if self.ceiling_tflops is None:
            return self.unmeasured
        return f"{flop_per_s / 1e12 / self.ceiling_tflops:.1%}"


class Table:
    """Rows printed as they are measured; with ``out``, the whole table rewritten (JSON and Markdown) after each."""

    WIDTHS = (52, 26, 52, 21)

    def __init__(self, header: list[str], out: Path | None) -> None:
        self.header, self.out, self.rows = header, out, []
        print("\n".join(header))
        print(self._line(Row("row", "measured", "anchor / target", "of bf16 ceiling", "note")), flush=True)

    def add(self, row: Row) -> None:
        self.rows.append(row)
        print(self._line(row), flush=True)
        if self.out is not None:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            self.out.with_suffix(".json").write_text(
                json.dumps({"header": self.header, "rows": [dataclasses.asdict(r) for r in self.rows]}, indent=1)
            )
            self.out.with_suffix(".md").write_text(self.markdown())

    def _line(self, row: Row) -> str:
        cells = (row.name, row.figure, row.anchor, row.ceiling)
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, self.WIDTHS)) + "  " + row.note

    def markdown(self) -> str:
        lines = [f"- {line}" for line in self.header] + [
            "",
            "| row | measured | anchor / target | of bf16 ceiling | note |",
            "|---|---|---|---|---|",
        ]
        lines += [f"| {r.name} | {r.figure} | {r.anchor} | {r.ceiling} | {r.note} |" for r in self.rows]
        return "\n".join(lines) + "\n"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(call: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    """Seconds one call takes with the device's queued work finished, and its result."""
    synchronize(device)
    start = time.perf_counter()
    result = call()
    synchronize(device)
    return time.perf_counter() - start, result


def repeated_seconds(call: Callable[[], Any], device: torch.device, min_seconds: float, min_calls: int = 3) -> tuple[float, float]:
    """(seconds of the first call, mean seconds of the calls after it); calls repeat for ``min_seconds`` at least."""
    first, _ = timed(call, device)
    calls, total = 0, 0.0
    while calls < min_calls or total < min_seconds:
        seconds, _ = timed(call, device)
        calls, total = calls + 1, total + seconds
    return first, total / calls


def encoder_inputs(sam: FrozenSam, scale: Scale) -> torch.Tensor:
    """A batch of random 16:9 frames, preprocessed as ``SamPredictor`` does, on the device."""
    generator = torch.Generator().manual_seed(0)
    height = scale.frame_size
    shape = (height, height * 16 // 9, 3)
    frames = [torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator).numpy() for _ in range(scale.encoder_batch)]
    return torch.stack([sam.preprocess(frame) for frame in frames])


def encoder_flops(sam: FrozenSam, inputs: torch.Tensor) -> int:
    """FLOPs of one frame through the image encoder, counted by ``FlopCounterMode`` (the same for every variant)."""
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        sam.encode_inputs(inputs[:1])
    return counter.get_total_flops()


def encoder_rows(run: Run, label: str, name: str) -> Iterator[Row]:
    """The bare image encoder in every variant: frames/s, share of the bf16 ceiling, compile seconds."""
    scale = run.scale
    plain = FrozenSam.from_name(name).to(scale.device)
    inputs = encoder_inputs(plain, scale)
    flops = encoder_flops(plain, inputs)
    yield Row(f"embed {label}: encoder GFLOP per frame", f"{flops / 1e9:.1f} GFLOP", note=f"SAM {name}, FlopCounterMode, one frame")
    for variant, options in VARIANTS.items():
        sam = FrozenSam(copy.deepcopy(plain.sam), name, plain.weights_id, options)
        with torch.inference_mode():
            first, steady = repeated_seconds(lambda: sam.encode_inputs(inputs), scale.device, scale.measure_seconds)
        fps = scale.encoder_batch / steady
        run.rates[(label, variant)] = fps
        note = f"batch {scale.encoder_batch}, {fps * flops / 1e12:.3g} TFLOP/s"
        yield Row(
            f"embed {label}: encoder {variant}", f"{fps:.1f} frames/s", ENCODER_ANCHORS[label], run.ceiling_fraction(fps * flops), note
        )
        if options.compile:
            yield Row(f"embed {label}: torch.compile time", f"{first - steady:.1f} s", note="first batch minus a steady one")


def stage_rows(run: Run, label: str, name: str) -> Iterator[Row]:
    """The embed stage against the bare encoder (same options) and the naive ``SamPredictor`` loop."""
    scale, bare = run.scale, run.rates[(label, STAGE_VARIANT)]
    frames = sum(row["n_frames"] for row in run.frame_rows)
    sam = FrozenSam.from_name(name, options=VARIANTS[STAGE_VARIANT]).to(scale.device)
    sam.encode([run_frame(run)])  # warm-up
    rates = {}
    for prefetch, how in ((0, "sequential"), (PREFETCH_BATCHES, "overlapped")):
        out = run.work / f"stage-{label}-{prefetch}"
        out.mkdir()
        seconds, _ = timed(
            lambda: [
                embed_shard(sam, run.frames_dir / r["shard"], r["sha256"], out, scale.encoder_batch, "float16", prefetch)
                for r in run.frame_rows
            ],
            scale.device,
        )
        rates[how] = frames / seconds
        note = f"{rates[how] / bare:.0%} of the bare {STAGE_VARIANT} encoder; {frames} frames in {len(run.frame_rows)} shards"
        yield Row(f"embed {label}: stage per-shard path, {how}", f"{rates[how]:.1f} frames/s", STAGE_TARGET, note=note)

    naive_rate = yield from naive_rows(run, label, name)
    out = run.work / f"ray-{label}"
    seconds, _ = timed(
        lambda: embed_shards(run.frames_dir, out, name, batch_size=scale.encoder_batch, options=VARIANTS[STAGE_VARIANT]), scale.device
    )
    fps = frames / seconds
    note = f"{fps / bare:.0%} of the bare encoder, {fps / naive_rate:.2f}x naive; actor start-up and model load included"
    yield Row(f"embed {label}: stage through Ray Data, end to end", f"{fps:.1f} frames/s", STAGE_TARGET, note=note)
    overlap = rates["overlapped"] / rates["sequential"]
    yield Row(
        f"embed {label}: loader thread speed-up",
        f"{overlap:.2f}x",
        "> 1 when decoding costs",
        note="overlapped / sequential per-shard path",
    )


def naive_rows(run: Run, label: str, name: str) -> Iterator[Row]:
    """``SamPredictor.set_image`` per frame and one ``.npy`` each (benchmarks/embed_throughput.py); returns its frames/s."""
    sam = FrozenSam.from_name(name).to(run.scale.device)
    shards, frames = [], 0
    for row in run.frame_rows:
        if frames < run.scale.naive_frames:
            shards.append(row)
            frames += row["n_frames"]
    out = run.work / f"naive-{label}"
    out.mkdir()
    seconds, (done, _) = timed(lambda: naive_pass(sam, run.frames_dir, shards, out, 1, "float32"), run.scale.device)
    yield Row(
        f"embed {label}: naive SamPredictor loop",
        f"{done / seconds:.1f} frames/s",
        note="float32, one frame at a time, decode and .npy included",
    )
    return done / seconds


def run_frame(run: Run) -> Any:
    """The first frame of the first frame shard."""
    return next(read_shard(run.frames_dir / run.frame_rows[0]["shard"])).frame(0)


def model_config(scale: Scale, sam_name: str) -> Config:
    """The scale's proposal generator (conf/model/<generator>.yaml) over ``sam_name``, random weights allowed."""
    files = [REPO / "conf" / "tiny.yaml", REPO / "conf" / "model" / f"{scale.generator}.yaml"]
    return load_config(files, [f"model.sam={sam_name}", "model.allow_random_weights=true"])


def frozen_encoders(config: Config, device: torch.device) -> FrozenEncoders:
    """Frozen SAM and text encoder with the stage's options, on ``device``."""
    options = VARIANTS[STAGE_VARIANT]
    sam = FrozenSam.from_name(config.model.sam, seed=config.model.sam_seed, options=options).to(device)
    return FrozenEncoders(sam=sam, text=FrozenTextEncoder(config.model.text_encoder, dtype=options.dtype).to(device))


class OnDevice(torch.nn.Module):
    """The model, fed batches moved to its device (the training loop collates on the CPU)."""

    def __init__(self, model: torch.nn.Module, device: torch.device) -> None:
        super().__init__()
        self.model, self.device = model, device

    def forward(self, frozen: FrozenEncoders, batch: ClipBatch, loss: Any) -> dict[str, torch.Tensor]:
        moved = {
            f.name: getattr(batch, f.name).to(self.device)
            for f in dataclasses.fields(batch)
            if isinstance(getattr(batch, f.name), torch.Tensor)
        }
        return compute_losses(self.model, frozen, dataclasses.replace(batch, **moved), loss)


def train_rows(run: Run) -> Iterator[Row]:
    """Training clips/s from precomputed embeddings against encoding every clip's frames on the fly."""
    scale, device = run.scale, run.scale.device
    videos, frames, clip_len, batch_size, steps, rounds = scale.train
    config = model_config(scale, scale.models["ViT-H"])
    frozen = frozen_encoders(config, device)
    torch.manual_seed(0)
    model = build_model(config.model, frozen).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    if device.type == "cuda":
        optimizer.register_step_post_hook(lambda *_: torch.cuda.synchronize(device))  # timed_pass reads the clock after step()
    folder = run.work / "train"
    folder.mkdir()
    shard = prepare(folder, videos, frames)
    record, _ = embed_shard(frozen.sam, shard, sha256_file(shard), folder, scale.encoder_batch)
    make_items = lambda: clip_items(precomputed(shard, folder / record["shard"]), clip_len)  # noqa: E731
    encoder = FrameEncoder(shard, frozen.sam)
    best = {"precomputed": 0.0, "on the fly": 0.0}
    for _ in range(rounds):
        for path, encode in (("precomputed", None), ("on the fly", encoder)):
            best[path] = max(best[path], timed_pass(make_items, OnDevice(model, device), frozen, optimizer, batch_size, steps, encode))
    parameters = sum(p.numel() for p in model.parameters()) / 1e6
    shape = f"{batch_size} clips x {clip_len} frames a step, best of {rounds}; {scale.generator} generator ({parameters:.1f}M parameters)"
    yield Row("train: proposal generator, precomputed embeddings", f"{best['precomputed']:.2f} clips/s", note=shape)
    note = f"SAM {config.model.sam} {STAGE_VARIANT}"
    yield Row("train: proposal generator, encoding on the fly", f"{best['on the fly']:.2f} clips/s", note=note)
    yield Row("train: precomputed / on the fly", f"{best['precomputed'] / best['on the fly']:.1f}x", "> 1: the method's efficiency claim")


def infer_rows(run: Run) -> Iterator[Row]:
    """Inference frames/s on long synthetic videos: the stage through Ray, and its per-video work on the device."""
    yield from stage_infer_rows(run)
    yield from device_infer_rows(run)


def stage_infer_rows(run: Run) -> Iterator[Row]:
    """``stages.infer.infer`` end to end; its actors ask Ray for CPUs only, so the tiny SAM stands in on GPU machines too."""
    scale = run.scale
    video = write_synthetic_mp4(run.work / "stage-video.mp4", scale.stage_infer_frames, 128)
    queries = run.work / "queries.csv"
    queries.write_text("video,query\n" + "".join(f"stage-video,{SENTENCES[i % len(SENTENCES)]}\n" for i in range(scale.queries)))
    config = model_config(scale, "tiny")
    seconds, summary = timed(
        lambda: infer(config, [video], queries, run.work / "stage-infer", random_model=True, encode_batch=scale.encoder_batch),
        torch.device("cpu"),
    )
    note = f"{summary['frames']} frames of 128 px, {scale.queries} queries, SAM tiny on CPU actors (the stage asks for no GPU); start-up included"
    yield Row("infer: stage end to end (stages.infer, Ray)", f"{summary['frames'] / seconds:.1f} frames/s", note=note)


def device_infer_rows(run: Run) -> Iterator[Row]:
    """``infer_video`` (the stage's per-video work) with every model on the device, and its peak GPU memory."""
    scale, device = run.scale, run.scale.device
    config = model_config(scale, scale.models["ViT-H"])
    weights = random_weights(config.train.seed)
    frozen, model = build_trained_model(config.model, weights, frozen=frozen_encoders(config, device), seed=config.train.seed)
    predictor = Predictor(frozen, model.to(device), build_segmentor("sam", sam=frozen.sam), "sam", weights.model_id)
    source = video_source(write_synthetic_mp4(run.work / "long-video.mp4", scale.infer_frames, scale.infer_size))
    queries = [Query(source.name, SENTENCES[i % len(SENTENCES)], str(i)) for i in range(scale.queries)]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    options = OutputOptions(encode_batch=scale.encoder_batch)
    seconds, result = timed(
        lambda: infer_video(predictor, source, queries, run.work / "device-infer", config.model, options, log=lambda _: None), device
    )
    if result.status != "done":
        raise RuntimeError(f"infer_video failed: {result.errors}")
    note = f"{result.n_frames} frames of {scale.infer_size} px on {device}, {scale.queries} queries, SAM {config.model.sam} {STAGE_VARIANT}"
    anchor = "fastest RVOS ~51 FPS; target >= 60"
    yield Row("infer ViT-H: infer_video on the device", f"{result.n_frames / seconds:.1f} frames/s", anchor, note=note)
    peak = f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB" if device.type == "cuda" else run.unmeasured
    yield Row("infer ViT-H: peak GPU memory", peak, note="torch.cuda.max_memory_allocated during infer_video")


def grounding_dino_rows(run: Run) -> Iterator[Row]:
    """One fine-tuning step of the base-size Grounding DINO generator (Swin-B, BERT-base; random weights) in bf16:
    frozen parts under no_grad and autocast, the whole loss of eq. 1-4 with SAM ViT-B's prompt encoder."""
    name = "train: Grounding DINO (base) fine-tuning step, bf16"
    device = run.scale.device
    if device.type != "cuda":
        yield Row(name, "unmeasured", note="needs a GPU (the base detector at 800 pixels)")
        return
    batch_size, frames, side = 2, 2, 800
    config = model_config(run.scale, run.scale.models["ViT-B"])
    frozen = frozen_encoders(config, device)
    torch.manual_seed(0)
    proposal = base_generator(dtype="bfloat16")
    model = GroPrompt(proposal, ModalConHead(frozen.sam.embed_dim, proposal.sentence_dim)).to(device).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    grid = frozen.sam.embed_grid
    boxes = torch.tensor([[0.3, 0.4, 0.2, 0.3], [0.6, 0.5, 0.3, 0.2]], device=device)[:, None].expand(batch_size, frames, 4)
    present = torch.ones(batch_size, frames, dtype=torch.bool, device=device)
    batch = ClipBatch(
        embeddings=torch.randn(batch_size, frames, frozen.sam.embed_dim, grid, grid, device=device),
        sentences=list(SENTENCES[:batch_size]),
        negatives=list(SENTENCES[batch_size : 2 * batch_size]),
        boxes=boxes,
        valid=present,
        negative_boxes=boxes.flip(0),
        negative_valid=present,
        same_video=torch.ones(batch_size, dtype=torch.bool, device=device),
        input_sizes=torch.tensor([[1024, 1024]] * batch_size, device=device),
        pixels=torch.randint(0, 256, (batch_size, frames, 3, side, side), dtype=torch.uint8, device=device),
    )

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        compute_losses(model, frozen, batch, config.loss)["total"].backward()
        optimizer.step()

    torch.cuda.reset_peak_memory_stats(device)
    first, seconds = repeated_seconds(step, device, run.scale.measure_seconds)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6
    note = (
        f"{batch_size} clips x {frames} frames of {side}x{side} (and their negatives); {trainable:.1f}M trainable; first step {first:.1f} s"
    )
    yield Row(name, f"{seconds * 1000:.0f} ms/step", note=note)
    yield Row("train: Grounding DINO (base) peak GPU memory", f"{torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB")


def segment_video(segmentor: Segmentor | VideoSegmentor, frames: int, scale: Scale) -> None:
    """One stream of the scale's queries over ``frames`` random frames, as evaluation and inference open it: fixed
    boxes whose confidences alternate above and below SAM 2's prompt score (box prompts, then memory alone)."""
    generator = torch.Generator().manual_seed(0)
    height, width = scale.segment_size, scale.segment_size * 16 // 9
    step = width / (2 * scale.queries)
    boxes = np.array([[step * i, height / 4, step * (i + 2), height * 3 / 4] for i in range(scale.queries)])
    stream = open_stream(segmentor, scale.queries)
    for t in range(frames):
        frame = torch.randint(0, 256, (height, width, 3), dtype=torch.uint8, generator=generator).numpy()
        stream.step(frame, boxes, np.full(scale.queries, 0.9 if t % 2 == 0 else 0.2))


def segmentor_rows(run: Run) -> Iterator[Row]:
    """Frames/s of each segmentor (bf16 on a GPU), and SAM 2's memory on a 10x longer video; a run without a GPU
    runs the same code at toy size on one CPU thread (toy models are many tiny ops, which two threads on a busy
    machine slow down by waiting on each other), its figures in the notes."""
    scale, device = run.scale, run.scale.device
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    threads = torch.get_num_threads()
    torch.set_num_threads(threads if device.type == "cuda" else 1)
    try:
        for label, (kind, name) in scale.segmentors.items():
            segmentor = SEGMENTOR_MODELS[kind](name)
            segmentor.model.to(device, dtype)
            segment_video(segmentor, 1, scale)  # warm-up
            seconds, _ = timed(lambda: segment_video(segmentor, scale.segment_frames, scale), device)
            fps = scale.segment_frames / seconds
            where = f"{name}, {scale.queries} queries, {scale.segment_size} px frames, {str(dtype).removeprefix('torch.')} on {device}"
            if device.type == "cuda":
                yield Row(f"segment {label}: frames/s", f"{fps:.1f} frames/s", note=where)
            else:
                yield Row(f"segment {label}: frames/s", run.unmeasured, note=f"toy run: {fps:.1f} frames/s ({where})")
            if isinstance(segmentor, VideoSegmentor):
                yield sam2_memory_row(run, label, segmentor)
    finally:
        torch.set_num_threads(threads)


def sam2_memory_row(run: Run, label: str, segmentor: VideoSegmentor) -> Row:
    """Peak and resident GPU memory (beyond the weights) of one stream over the short video and one 10x longer."""
    scale, device = run.scale, run.scale.device
    name, lengths = f"segment {label}: GPU memory, {LONGER}x longer video", (scale.segment_frames, LONGER * scale.segment_frames)
    if device.type != "cuda":
        for frames in lengths:
            segment_video(segmentor, frames, scale)
        return Row(name, run.unmeasured, "flat: <= 1.25x the short video's", note=f"toy run: streamed {lengths[0]} and {lengths[1]} frames")
    peaks = []
    for frames in lengths:
        synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        segment_video(segmentor, frames, scale)
        synchronize(device)
        peaks.append((torch.cuda.max_memory_allocated(device) - base) / 2**20)
    note = f"peak beyond the weights: {peaks[0]:.0f} MiB over {lengths[0]} frames, {peaks[1]:.0f} MiB over {lengths[1]}"
    return Row(name, f"{peaks[1] / peaks[0]:.2f}x", "flat: <= 1.25x the short video's", note=note)


def frame_shard_rows(run: Run) -> Iterator[Row]:
    """RefShapes videos written on the fly, cut into a few frame shards by the shard stage (``shard_dataset``)."""
    scale = run.scale
    started = time.perf_counter()
    spec = RefShapesSpec(videos=scale.stage_videos, frames=scale.frames_per_video, size=scale.frame_size, seed=0)
    write_refshapes(run.work / "refshapes", spec, valid_fraction=0.0, progress=False)
    frames_per_shard = scale.stage_videos * scale.frames_per_video // scale.shards
    settings = ShardSettings(window=scale.frames_per_video, shard_bytes=frames_per_shard * scale.frame_size**2 // 2)  # JPEG >= 6:1
    run.frame_rows = read_manifest(shard_dataset("refshapes", str(run.work / "refshapes"), "train", run.frames_dir, settings))[0]
    frames = sum(row["n_frames"] for row in run.frame_rows)
    note = f"RefShapes {scale.frame_size} px, written and sharded in {time.perf_counter() - started:.1f} s"
    yield Row("embed: frame shards for the stage rows", f"{frames} frames, {len(run.frame_rows)} shards", note=note)


def sections(run: Run) -> Iterator[tuple[str, Callable[[], Iterator[Row]]]]:
    """(title, rows) in the order they run; a section that fails reports it in one row and the next one runs."""
    yield "frame shards", lambda: frame_shard_rows(run)
    for label, name in run.scale.models.items():
        yield f"embed {label} encoder", lambda label=label, name=name: encoder_rows(run, label, name)
        yield f"embed {label} stage", lambda label=label, name=name: stage_rows(run, label, name)
    yield "train", lambda: train_rows(run)
    yield "infer", lambda: infer_rows(run)
    yield "Grounding DINO", lambda: grounding_dino_rows(run)
    yield "segmentors", lambda: segmentor_rows(run)


def bf16_ceiling(override: float | None) -> float | None:
    """The device's dense bf16 peak in TFLOP/s (``override`` first); None without CUDA or for an unknown device."""
    if override is not None:
        return override
    name = torch.cuda.get_device_name()
    return next((tflops for fragment, tflops in BF16_CEILINGS if fragment in name), None)


def header(scale: Scale, toy: bool, ceiling: float | None) -> list[str]:
    """What the run is: device, sizes, weights."""
    if toy:
        reason = "--dry-run" if torch.cuda.is_available() else "no CUDA device"
        where = f"DRY RUN ({reason}): toy sizes on CPU, tiny SAMs stand in for ViT-B and ViT-H; figures are not comparable with the anchors"
    else:
        where = f"{torch.cuda.get_device_name()}; bf16 ceiling {ceiling or 'unknown'} TFLOP/s dense (datasheet; --ceiling-tflops overrides)"
    return [
        f"device suite: {where}",
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; frames {scale.frame_size} px; encoder batch {scale.encoder_batch}",
        "weights: random (no checkpoint); the compute is the same as with real weights, masks and boxes mean nothing",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="toy sizes on CPU: the same code paths, in under 3 minutes")
    parser.add_argument("--out", type=Path, default=None, help="also write the table to OUT.json and OUT.md")
    parser.add_argument("--ceiling-tflops", type=float, default=None, help="dense bf16 peak of the device (default: from its name)")
    args = parser.parse_args(argv)
    toy = args.dry_run or not torch.cuda.is_available()
    scale = TOY if toy else FULL
    ceiling = None if toy else bf16_ceiling(args.ceiling_tflops)
    unmeasured = "unmeasured (no GPU)" if not torch.cuda.is_available() else "unmeasured (dry run)"
    started = time.perf_counter()
    table = Table(header(scale, toy, ceiling), args.out)
    init_ray(None)
    failures, timings = 0, []
    with tempfile.TemporaryDirectory() as work:
        run = Run(scale, Path(work), unmeasured, ceiling)
        for title, rows in sections(run):
            section_started = time.perf_counter()
            try:
                for row in rows():
                    table.add(row)
            except Exception as error:  # noqa: BLE001 - one failed section must not cost the others' figures on a rented GPU
                failures += 1
                table.add(Row(f"{title}: FAILED", f"{type(error).__name__}", note=str(error).splitlines()[0] if str(error) else ""))
            if scale.device.type == "cuda":
                torch.cuda.empty_cache()
            timings.append(f"{title} {time.perf_counter() - section_started:.0f} s")
    print(f"{len(table.rows)} rows in {time.perf_counter() - started:.0f} s ({', '.join(timings)}); {failures} sections failed", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
