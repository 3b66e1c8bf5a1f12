"""Ref-DAVIS17 per annotator: the annotator of each expression, merged palette PNGs, the unsupervised scores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from groprompt.data.formats import read_videos
from groprompt.evaluation.ref_davis import annotator_folder, annotator_ranks, score_annotators, write_annotator_frame
from groprompt.mask_io import read_index_png, write_index_png


def test_annotators_follow_the_referformer_layout(shared_data: Path) -> None:
    # The full Ref-DAVIS17 valid meta: expression k of a video is object k // 4 + 1 (4 sentences an object, object
    # by object), so annotator k % 4 (ReferFormer's inference_davis.py: i = obj_id * 4 + anno_id).
    meta = json.loads((shared_data / "annotations" / "ref-davis17_valid_meta_expressions.json").read_text())["videos"]
    multi_object = 0
    for video in meta.values():
        obj_ids = [int(e["obj_id"]) for e in video["expressions"].values()]
        assert obj_ids == [k // 4 + 1 for k in range(len(obj_ids))]
        assert annotator_ranks(obj_ids) == [k % 4 for k in range(len(obj_ids))]
        multi_object += len(set(obj_ids)) > 1
    assert len(meta) == 30 and multi_object > 0  # with n objects, k // n would give one annotator the same object twice
    for video in read_videos("ref-davis17", shared_data / "ref-davis-mini", "valid", with_boxes=False):
        assert annotator_ranks([e.obj_id for e in video.expressions]) == [0, 1, 2, 3]


def test_annotator_frames_merge_each_annotators_expressions(tmp_path: Path) -> None:
    masks = np.zeros((4, 4, 6), dtype=bool)
    masks[0, 0, :3] = True  # object 1, annotator 0
    masks[1, 1, :3] = True  # object 1, annotator 1
    masks[2, 0, 2:] = True  # object 2, annotator 0: overlaps object 1 at (0, 2), where the higher id wins
    masks[3, 3, :] = True  # object 2, annotator 1
    write_annotator_frame(tmp_path, "cows", "00007", [1, 1, 2, 2], masks)
    first = read_index_png(annotator_folder(tmp_path, 0) / "cows" / "00007.png")
    second = read_index_png(tmp_path / "anno_1" / "cows" / "00007.png")
    assert first[0].tolist() == [1, 1, 2, 2, 2, 2] and not first[1:].any()
    assert second[1].tolist() == [1, 1, 1, 0, 0, 0] and second[3].tolist() == [2] * 6 and not second[[0, 2]].any()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["anno_0", "anno_1"]


def test_score_annotators_by_hand(tmp_path: Path) -> None:
    gt = np.zeros((8, 8), np.int32)
    gt[1:4, 1:4], gt[5:8, 4:8] = 1, 2
    for t in range(2):
        write_index_png(tmp_path / "gt" / "seq" / f"{t:05d}.png", gt)
        # annotator 0: both objects exactly, their ids swapped: the assignment pairs them, J = F = 1
        write_index_png(tmp_path / "pred" / "anno_0" / "seq" / f"{t:05d}.png", np.choose(gt, [0, 2, 1]))
        # annotator 1: object 1 exactly, object 2 missed (an empty mask where it is present: J = F = 0)
        write_index_png(tmp_path / "pred" / "anno_1" / "seq" / f"{t:05d}.png", (gt == 1).astype(np.int32))
    result = score_annotators(tmp_path / "gt", tmp_path / "pred", ["seq"])
    assert result["anno_0"] == {"J": 1.0, "F": 1.0, "JF": 1.0}
    assert result["anno_1"] == {"J": 0.5, "F": 0.5, "JF": 0.5}
    assert result["mean"] == pytest.approx({"J": 0.75, "F": 0.75, "JF": 0.75})
    assert (result["n_sequences"], result["n_objects"]) == (1, 2)
