"""SAM 2 with memory as a segmentor, loaded through the configuration from a tiny saved folder: its masks equal a plain
loop over transformers' session API (track the frame, then correct it with the box, nothing forgotten); SAM 2's
absent object gives empty masks; the memory it keeps stays flat on a 10x longer video."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from groprompt.config import ModelConfig
from groprompt.models.sam2_video import Sam2Segmentor, Sam2Stream
from groprompt.models.segmentors import build_segmentor, open_stream

SIZE = (48, 80)
THRESHOLD = 0.5
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def video(frames: int, seed: int = 0) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Random frames, boxes (T, 3, 4) drifting right (object 2 has no box on frames 0-1) and confidences (T, 3)."""
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8) for _ in range(frames)]
    boxes = np.array([[[4 + t % 30, 6, 30 + t % 30, 30], [40, 2 + t % 10, 76, 40], [10, 20, 50, 46]] for t in range(frames)], dtype=float)
    boxes[:2, 2] = np.nan
    scores = rng.uniform(0, 1, (frames, 3))
    return images, boxes, scores


def sam2(folder: Path, prompt_score: float = THRESHOLD) -> Sam2Segmentor:
    segmentor = build_segmentor("sam2", config=ModelConfig(segmentor_weights=str(folder), sam2_prompt_score=prompt_score))
    assert isinstance(segmentor, Sam2Segmentor)
    return segmentor


def reference_masks(folder: Path, images: list[np.ndarray], boxes: np.ndarray, scores: np.ndarray) -> list[np.ndarray]:
    """The policy with the public session API: an object's first box starts it; every frame is tracked, and a box
    confident enough then corrects the tracked frame (a second forward on it); the session keeps everything."""
    from transformers import Sam2VideoModel, Sam2VideoProcessor

    model, processor = Sam2VideoModel.from_pretrained(folder).eval(), Sam2VideoProcessor.from_pretrained(folder)
    session = processor.init_video_session(inference_device="cpu", dtype=torch.float32)
    started: list[int] = []
    masks = []
    for t, (image, frame_boxes, frame_scores) in enumerate(zip(images, boxes, scores)):
        boxed = [i for i in range(len(frame_boxes)) if np.isfinite(frame_boxes[i]).all()]
        new = [i for i in boxed if i not in started]
        corrected = [i for i in boxed if i in started and frame_scores[i] >= THRESHOLD]
        frame_masks = np.zeros((len(frame_boxes), *SIZE), dtype=bool)
        if new:
            processor.add_inputs_to_inference_session(
                session, frame_idx=t, obj_ids=new, input_boxes=[frame_boxes[new].tolist()], original_size=SIZE
            )
            started += new
        if started:
            pixels = processor(images=image, return_tensors="pt")["pixel_values"][0]
            output = model(inference_session=session, frame_idx=t, frame=pixels)
            if corrected:
                processor.add_inputs_to_inference_session(
                    session, frame_idx=t, obj_ids=corrected, input_boxes=[frame_boxes[corrected].tolist()], original_size=SIZE
                )
                output = model(inference_session=session, frame_idx=t, frame=pixels)
            decoded = processor.post_process_masks([output.pred_masks], original_sizes=[SIZE], binarize=True)[0]
            frame_masks[output.object_ids] = decoded[:, 0].numpy()
        masks.append(frame_masks)
    return masks


def run(stream: Any, images: list[np.ndarray], boxes: np.ndarray, scores: np.ndarray) -> list[np.ndarray]:
    return [stream.step(image, frame_boxes, frame_scores) for image, frame_boxes, frame_scores in zip(images, boxes, scores)]


def test_sam2_masks_equal_a_reference_session_loop(sam2_folder: Path) -> None:
    images, boxes, scores = video(8)
    segmentor = sam2(sam2_folder)
    assert segmentor.needs_frame and not segmentor.needs_embedding
    stream = open_stream(segmentor, 3)
    assert isinstance(stream, Sam2Stream) and stream.stateful
    masks = run(stream, images, boxes, scores)
    expected = reference_masks(sam2_folder, images, boxes, scores)
    for t, (got, want) in enumerate(zip(masks, expected)):
        np.testing.assert_array_equal(got, want, err_msg=f"frame {t}")
    assert not masks[0][2].any() and not masks[1][2].any()  # no box yet: object 2 has not started
    assert any(mask.any() for mask in masks)
    always = run(open_stream(sam2(sam2_folder, prompt_score=0.0), 3), images, boxes, scores)
    assert any((a != m).any() for a, m in zip(always, masks))  # the memory's mask was kept over low-confidence boxes
    with pytest.raises(ValueError, match="expected boxes"):
        stream.step(images[0], boxes[0, :2], scores[0, :2])


def test_sam2_object_absent_by_its_object_score_comes_out_empty(sam2_folder: Path) -> None:
    images, boxes, scores = video(4)
    segmentor = sam2(sam2_folder)
    head = segmentor.model.mask_decoder.pred_obj_score_head.proj_out
    with torch.no_grad():
        for logit, present in ((5.0, True), (-5.0, False)):
            nn.init.zeros_(head.weight)
            nn.init.constant_(head.bias, logit)
            masks = np.stack(run(segmentor.open(3), images, boxes, scores))  # (T, 3, H, W)
            assert masks[:, :2].any(axis=(2, 3)).all() if present else not masks.any()


def resident_bytes(root: Any) -> int:
    """Bytes of the distinct tensor storages reachable from ``root`` through containers and attributes; modules (the
    model's weights) and processors are shared and constant, not counted."""
    seen, storages, stack = set(), {}, [root]
    while stack:
        item = stack.pop()
        if id(item) in seen or isinstance(item, nn.Module) or type(item).__name__.endswith("Processor"):
            continue
        seen.add(id(item))
        if isinstance(item, torch.Tensor):
            storage = item.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
        elif isinstance(item, dict):
            stack += [*item.keys(), *item.values()]
        elif isinstance(item, (list, tuple, set)):
            stack += list(item)
        elif hasattr(item, "__dict__"):
            stack.append(vars(item))
    return sum(storages.values())


def test_sam2_memory_stays_flat_on_a_10x_longer_video(sam2_folder: Path) -> None:
    segmentor = sam2(sam2_folder)
    kept = []
    for frames in (6, 60):
        stream = segmentor.open(3)
        run(stream, *video(frames))
        kept.append(resident_bytes(stream))
    short, long = kept
    assert short > 0 and long <= 1.25 * short, f"{short} bytes after 6 frames, {long} after 60"
