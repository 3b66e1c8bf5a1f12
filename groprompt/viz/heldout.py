"""Pictures of what a trained model does on held-out videos: one animated GIF per referring expression, every frame
with the sentence above it, the predicted mask and box, and the ground-truth box (``groprompt.viz.drawing``)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import groupby, islice
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from groprompt.checkpoints import load_trained, with_model_of
from groprompt.config import Config
from groprompt.data.shard_pairs import shard_pairs
from groprompt.data.shards import ShardSample
from groprompt.data.targets import referring_expressions
from groprompt.evaluation.box_sources import BoxSource, ModelBoxes, ground_truth_boxes
from groprompt.evaluation.scoring import paired_samples, sample_frames, segment_boxes
from groprompt.files import Location, local_file, location
from groprompt.models.segmentors import Segmentor, VideoSegmentor, build_segmentor, open_stream
from groprompt.tracking import with_tracking_uri
from groprompt.viz.drawing import Color, captioned, overlay, write_video

OVERLAYS_FOLDER = "overlays"  # the MLflow artifact folder of the GIFs
PREDICTED_COLOR: Color = (255, 40, 200)
GROUND_TRUTH_COLOR: Color = (40, 255, 80)
LEGEND = (("prediction", PREDICTED_COLOR), ("ground truth", GROUND_TRUTH_COLOR))

Embedded = tuple[ShardSample, np.ndarray | None]  # a shard sample with its SAM embeddings (None when not needed)


def overlay_frame(frame: np.ndarray, sentence: str, mask: np.ndarray, predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """One picture: the predicted mask and boxes (K, 4; none, one, or in the set mode several) and the ground-truth box
    (NaN: not drawn) on the RGB frame, below the sentence and the legend."""
    boxes = np.concatenate([predicted.reshape(-1, 4), truth[None]])
    drawn = overlay(frame, mask[None], boxes, colors=[PREDICTED_COLOR] * (len(boxes) - 1) + [GROUND_TRUTH_COLOR])
    return captioned(drawn, sentence, LEGEND)


def expression_frames(
    samples: Iterable[Embedded], expression: dict[str, Any], boxes: BoxSource, segmentor: Segmentor | VideoSegmentor
) -> Iterator[np.ndarray]:
    """The pictures of one expression over a video's samples (in order), at the size the shards store the frames."""
    stream = open_stream(segmentor, 1)
    for sample, embedding in samples:
        prompts = boxes.prompts(sample.meta, [expression], embedding, sample_frames(sample) if boxes.needs_frames else None)
        predicted = prompts.boxes[0]  # (T, K, 4)
        truth = ground_truth_boxes(sample.meta, expression["obj_id"])
        for t in range(len(sample.meta["frame_names"])):
            mask = segment_boxes(segmentor, stream, sample, t, predicted[t : t + 1], prompts.scores[0, t : t + 1], embedding)[0]
            frame = sample.frame(t)
            scale = np.array([frame.shape[1] / sample.meta["width"], frame.shape[0] / sample.meta["height"]] * 2)
            stored_mask = cv2.resize(mask.astype(np.uint8), (frame.shape[1], frame.shape[0]), interpolation=cv2.INTER_NEAREST) > 0
            yield overlay_frame(frame, expression["text"], stored_mask, predicted[t] * scale, truth[t] * scale)


def write_video_gifs(
    samples: list[Embedded], boxes: BoxSource, segmentor: Segmentor | VideoSegmentor, out_dir: Location, fps: int
) -> list[Location]:
    """``<out_dir>/<video>__<exp_id>.gif`` for each referring expression of one video, given its samples in order."""
    paths = []
    for expression in referring_expressions(samples[0][0].meta):
        path = out_dir / f"{samples[0][0].meta['video_id']}__{expression['exp_id']}.gif"
        write_video(path, expression_frames(samples, expression, boxes, segmentor), fps=fps)
        paths.append(path)
    return paths


def first_videos(samples: Iterable[Embedded], count: int) -> Iterator[list[Embedded]]:
    """The samples of each of the first ``count`` videos, grouped (a video's samples follow each other in shards)."""
    return islice((list(video) for _, video in groupby(samples, key=lambda item: item[0].meta["video_id"])), count)


def write_overlays(
    config: Config,
    checkpoint: str,
    out_dir: str | Path | Location,
    videos: int = 3,
    segmentor: str = "grabcut",
    split: str | None = None,
    run_id: str | None = None,
    fps: int = 4,
) -> dict[str, Any]:
    """GIFs of the trained model (``checkpoint``: see ``groprompt.checkpoints.load_trained``) on the first ``videos``
    videos of the held-out split's evaluation and embedding shards, one per referring expression, in ``out_dir``;
    logged to MLflow run ``run_id`` (artifact folder ``overlays/``) when given. Returns the GIF paths and the run."""
    config = with_tracking_uri(config)
    weights = load_trained(checkpoint, config.runtime.tracking_uri)
    config = with_model_of(config, weights)
    boxes = ModelBoxes.load(config.model, weights)
    box_segmentor = build_segmentor(segmentor, sam=boxes.frozen.sam if segmentor == "sam" else None, config=config.model)
    pairs = shard_pairs(config.data, split or config.data.val_split, boxes.frozen.sam)
    samples = (item for pair in pairs for item in paired_samples(pair.frames, pair.embeddings))
    out = location(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [path for video in first_videos(samples, videos) for path in write_video_gifs(video, boxes, box_segmentor, out, fps)]
    if run_id is not None:
        from mlflow import MlflowClient

        client = MlflowClient(config.runtime.tracking_uri)
        for path in paths:
            with local_file(path) as local:
                client.log_artifact(run_id, str(local), artifact_path=OVERLAYS_FOLDER)
    return {"gifs": [str(path) for path in paths], "run_id": run_id}
