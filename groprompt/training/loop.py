"""The training loop's pieces, independent of Ray: optimiser, one epoch, validation, checkpoint payloads."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Container, Iterable
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import nn

from groprompt.boxes import box_iou, cxcywh_to_xyxy
from groprompt.checkpoints import save_payload, training_payload
from groprompt.config import Config, DataConfig, TrainConfig
from groprompt.data.batches import ClipBatch, batches
from groprompt.data.clips import ClipSource
from groprompt.data.formats import check_training_splits
from groprompt.data.pixels import sample_pixels
from groprompt.data.shard_pairs import ShardPair, joined_shard_samples, metadata_of, shard_pairs
from groprompt.data.shards import read_shard
from groprompt.data.targets import normalised_boxes, referring_expressions
from groprompt.errors import DataError
from groprompt.files import location
from groprompt.models.frozen import FrozenEncoders, build_frozen
from groprompt.models.groprompt import GroPrompt, build_model
from groprompt.models.proposal import count_trainable
from groprompt.tracking import MetricLogger
from groprompt.training.step import TrainingStep

LOSS_METRICS = {
    "total": "loss_total",
    "l1": "loss_l1",
    "giou": "loss_giou",
    "conf": "loss_conf",
    "select": "loss_select",
    "aux": "loss_aux",
    "textcon": "loss_textcon",
    "modalcon": "loss_modalcon",
}


def build_optimizer(
    model: nn.Module, config: TrainConfig, steps_per_epoch: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW (paper: lr 1e-4) with a cosine decay over the whole run."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr, weight_decay=config.weight_decay)
    total = max(1, config.epochs * steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / total)))
    return optimizer, scheduler


def train_epoch(
    model: nn.Module,
    frozen: FrozenEncoders,
    batches: Iterable[ClipBatch],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    config: Config,
    on_step: Callable[[dict[str, float], int], None] | None = None,
) -> dict[str, float]:
    """One pass over ``batches``; returns the mean of each loss metric (named as logged)."""
    model.train()
    sums: dict[str, float] = {}
    steps = 0
    for batch in batches:
        terms = model(frozen, batch, config.loss)
        optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        if config.train.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), config.train.grad_clip)
        optimizer.step()
        scheduler.step()
        values = {LOSS_METRICS[name]: float(value.detach()) for name, value in terms.items()}
        for name, value in values.items():
            sums[name] = sums.get(name, 0.0) + value
        if on_step is not None:
            on_step(values, steps)
        steps += 1
    return {name: total / max(steps, 1) for name, total in sums.items()}


def rank_keys(pairs: list[ShardPair], rank: int, world: int) -> set[str]:
    """The keys of this rank's validation samples: whole videos, every world-th one in sorted order, so that each
    expression's frames are scored on one rank (JSON members only)."""
    metas = metadata_of(pairs)
    videos = sorted({meta["video_id"] for meta in metas})[rank::world]
    return {meta["key"] for meta in metas if meta["video_id"] in set(videos)}


@torch.no_grad()
def expression_box_ious(
    model: GroPrompt, frozen: FrozenEncoders, pairs: list[ShardPair], keys: Container[str] | None, device: torch.device
) -> dict[tuple[str, str], tuple[str, float]]:
    """(video, exp_id) -> (expression type, box IoU) of every expression with a box in the samples of ``keys`` (all
    samples when None): the mean IoU of its top box (set mode: the union box of its kept boxes, 0 where it keeps none),
    clipped to the frame, over the frames where the referred object is present, as evaluation's ``box_iou``.

    Each sample of the shards runs as one online clip, its inputs on ``device``. A generator that reads pixels gets
    the sample's frames once for all its expressions (read and decoded only for the samples in ``keys``).
    """
    model.eval()
    pixel_size = model.proposal.pixel_size
    per_expression: dict[tuple[str, str], tuple[str, list[float]]] = {}
    for pair in pairs:
        for sample, embeddings, _ in joined_shard_samples(pair, with_images=pixel_size is not None, keys=keys):
            meta = sample.meta
            expressions = referring_expressions(meta)
            if (keys is not None and sample.key not in keys) or not expressions:
                continue
            frames = range(len(meta["frame_names"]))
            clip = torch.from_numpy(embeddings).to(device).float()[None]  # one clip for all its expressions
            pixels = sample_pixels(sample, pixel_size)
            if pixels is not None:
                pixels = torch.from_numpy(pixels)[None].to(device)
            predicted, _ = model.predict_boxes(frozen, clip, [e["text"] for e in expressions], pixels)
            predicted = predicted.cpu()
            for row, expression in enumerate(expressions):
                boxes, valid = normalised_boxes(meta, expression["obj_id"], frames)
                target = cxcywh_to_xyxy(torch.from_numpy(boxes[valid]))
                ious = box_iou(cxcywh_to_xyxy(predicted[row][torch.from_numpy(valid)]).clamp(0, 1), target).nan_to_num(0.0)
                per_expression.setdefault((meta["video_id"], expression["exp_id"]), (expression["kind"], []))[1].extend(ious.tolist())
    return {key: (kind, sum(ious) / len(ious)) for key, (kind, ious) in per_expression.items() if ious}


def validation_iou(
    model: GroPrompt, frozen: FrozenEncoders, pairs: list[ShardPair], keys: Container[str], device: torch.device
) -> tuple[float, int]:
    """Sum of the box IoUs of the expressions in the samples of ``keys`` (``expression_box_ious``) and their count:
    ``val_box_iou`` is the sum over all ranks divided by the count, the mean over expressions, as evaluated."""
    scores = [iou for _, iou in expression_box_ious(model, frozen, pairs, keys, device).values()]
    return sum(scores), len(scores)


def require_validation_boxes(data: DataConfig, pairs: list[ShardPair]) -> None:
    """Refuse validation shards in which no referring expression has a box: ``val_box_iou`` would be a silent 0."""
    samples = (sample.meta for pair in pairs for sample in read_shard(pair.frames, with_images=False))
    if not any(_has_box(meta) for meta in samples):
        raise DataError(
            f"{location(data.shards) / data.val_split}: validation split {data.val_split!r} has no referring expression with a box "
            "(no object ids, or no masks); validate on held-out training videos (e.g. data.val_split=train-holdout)"
        )


def _has_box(meta: dict[str, Any]) -> bool:
    """Whether some referring expression of a shard sample has a box in some frame (what ``validation_iou`` scores)."""
    frames = range(len(meta["frame_names"]))
    return any(normalised_boxes(meta, expression["obj_id"], frames)[1].any() for expression in referring_expressions(meta))


class Session(Protocol):
    """What a training loop needs from its runner (Ray Train worker or Ray Tune trial)."""

    rank: int
    world: int
    device: torch.device  # where the model, the frozen encoders and every batch go

    def latest_checkpoint(self) -> dict[str, Any] | None: ...

    def prepare(self, model: nn.Module) -> nn.Module: ...

    def report(self, metrics: dict[str, float], checkpoint_folder: str | None) -> None: ...


def run_training(config: Config, session: Session, run_id: str | None) -> None:
    """Train from the latest checkpoint (if any) to ``train.epochs``, reporting metrics and a checkpoint each epoch."""
    check_training_splits(config.data)
    torch.set_num_threads(max(1, int(config.train.cpus_per_worker)))
    torch.manual_seed(config.train.seed)
    frozen = build_frozen(config.model)
    train_pairs = shard_pairs(config.data, config.data.split, frozen.sam)
    val_pairs = shard_pairs(config.data, config.data.val_split, frozen.sam)
    require_validation_boxes(config.data, val_pairs)
    device = session.device
    frozen.to(device)
    model = build_model(config.model, frozen).to(device)
    source = ClipSource(train_pairs, config.data.clip_len, session.rank, session.world, model.proposal.pixel_size)
    val_keys = rank_keys(val_pairs, session.rank, session.world)
    steps = source.steps(config.train.batch_size)

    if session.rank == 0:
        print(f"{count_trainable(model):,} trainable parameters; {steps} steps per epoch on each of {session.world} workers", flush=True)
    optimizer, scheduler = build_optimizer(model, config.train, steps)
    start_epoch = 0
    payload = session.latest_checkpoint()
    if payload is not None:
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        scheduler.load_state_dict(payload["scheduler"])
        torch.set_rng_state(payload["torch_rng"])
        start_epoch = payload["epoch"] + 1
    trained = session.prepare(TrainingStep(model))
    logger = MetricLogger(run_id, config.runtime.tracking_uri) if run_id and session.rank == 0 else None

    for epoch in range(start_epoch, config.train.epochs):
        log_step = None if logger is None else (lambda values, step, first=epoch * steps: logger.log(values, first + step))
        items = source.items(seed=config.train.seed * 1000 + epoch)
        on_device = (batch.to(device) for batch in batches(items, source.count, config.train.batch_size, steps))
        metrics = train_epoch(trained, frozen, on_device, optimizer, scheduler, config, log_step)
        iou = _reduce(torch.tensor(validation_iou(model, frozen, val_pairs, val_keys, device), dtype=torch.float64), device)
        metrics = {**metrics, "val_box_iou": float(iou[0] / max(float(iou[1]), 1.0)), "epoch": epoch}
        if logger is not None:
            logger.log(epoch_metrics(metrics), step=epoch)
        with tempfile.TemporaryDirectory() as folder:
            if session.rank == 0:
                save_payload(folder, training_payload(model, optimizer, scheduler, epoch))
            session.report(metrics, folder if session.rank == 0 else None)


def epoch_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """Per-epoch names: ``epoch_loss_*`` (means over the epoch; ``loss_*`` are per step) and ``val_*``."""
    return {(f"epoch_{k}" if k.startswith("loss_") else k): v for k, v in metrics.items() if k != "epoch"}


def _reduce(value: torch.Tensor, device: torch.device, op: Any = None) -> torch.Tensor:
    """All-reduce across DDP ranks when there are several (sum by default), on ``device`` (NCCL reduces GPU tensors
    only); the result on the CPU."""
    value = value.to(device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(value, op=op or dist.ReduceOp.SUM)
    return value.cpu()
