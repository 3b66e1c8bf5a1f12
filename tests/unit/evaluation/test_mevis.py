"""The MeViS protocol against a plain reference of its formulas, ``eval-masks --task mevis``, multi-object sentences
through evaluation shards, and the MeViS submission zip."""

from __future__ import annotations

import csv
import math
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from groprompt.cli import main
from groprompt.data.formats import read_videos
from groprompt.data.shards import ShardSettings, plan_shards, read_shard, write_shard
from groprompt.data.targets import normalised_boxes, referring_expressions
from groprompt.errors import DataError
from groprompt.evaluation.aggregate import merge_partials
from groprompt.evaluation.box_sources import OracleBoxes
from groprompt.evaluation.mevis import score_videos
from groprompt.evaluation.scoring import evaluate_shard
from groprompt.evaluation.submission import submission_layout, submission_masks, submission_members
from groprompt.mask_io import write_index_png, write_submission_zip
from groprompt.models.segmentors import build_segmentor
from tests.unit.conftest import MEVIS_SIZE, MEVIS_VIDEOS, SERVER_VIDEOS, MevisData, frame_names, rect_mask

Prediction = Callable[[str, str, int], np.ndarray]  # (video, exp_id, frame index) -> predicted mask


def reference_boundary(mask: np.ndarray) -> np.ndarray:
    """DAVIS ``seg2bmap``: a pixel differing from its right, lower or lower-right neighbour inside the image (padding
    by the edge values makes a neighbour outside the image equal to one inside that is compared anyway)."""
    padded = np.pad(mask, ((0, 1), (0, 1)), mode="edge")
    here = padded[:-1, :-1]
    return (here != padded[:-1, 1:]) | (here != padded[1:, :-1]) | (here != padded[1:, 1:])


def reference_j_f(gt: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """J: IoU, 1 when both are empty. F: boundary F-measure, a boundary pixel matching when the other boundary has a
    pixel within ceil(0.008 * diagonal) (Euclidean); both boundaries empty 1, one empty 0."""
    union = np.count_nonzero(gt | pred)
    j = 1.0 if union == 0 else np.count_nonzero(gt & pred) / union
    radius = math.ceil(0.008 * math.hypot(*gt.shape))
    gt_points, pred_points = np.argwhere(reference_boundary(gt)), np.argwhere(reference_boundary(pred))
    if len(gt_points) == 0 or len(pred_points) == 0:
        return j, 1.0 if len(gt_points) == len(pred_points) else 0.0
    distances = np.sqrt(((gt_points[:, None, :] - pred_points[None, :, :]) ** 2).sum(axis=-1))
    precision, recall = np.mean(distances.min(axis=0) <= radius), np.mean(distances.min(axis=1) <= radius)
    return j, 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def reference_scores(mevis: MevisData, prediction: Prediction) -> dict[tuple[str, str], tuple[float, float]]:
    """(video, exp_id) -> (J, F), each the mean over all the video's frames, from the rectangles written."""
    scores = {}
    for video, spec in MEVIS_VIDEOS.items():
        for exp_id, (_, annos) in spec["expressions"].items():
            values = [reference_j_f(mevis.truth(video, annos, t), prediction(video, exp_id, t)) for t in range(spec["frames"])]
            scores[video, exp_id] = tuple(np.mean(values, axis=0))
    return scores


def shifted_prediction(video: str, exp_id: str, t: int) -> np.ndarray:
    """Every expression's ground truth moved 3 pixels right and 1 down, except two: a missed frame of vid_b's cat, and a
    false blob in the first frame of its no-target sentence."""
    annos = MEVIS_VIDEOS[video]["expressions"][exp_id][1]
    mask = np.roll(MevisData.truth(video, annos, t), (1, 3), axis=(0, 1))
    if (video, exp_id, t) == ("vid_b", "0", 1):
        return np.zeros(MEVIS_SIZE, bool)
    if (video, exp_id, t) == ("vid_b", "1", 0):
        return rect_mask((50, 40, 70, 55))
    return mask


def write_predictions(folder: Path, prediction: Prediction, videos: tuple[str, ...] = tuple(MEVIS_VIDEOS)) -> Path:
    """``<folder>/<video>/<exp_id>/<frame>.png``, the palette PNG (id 1 on the mask) every evaluation writes."""
    for video in videos:
        spec = MEVIS_VIDEOS[video]
        for exp_id in spec["expressions"]:
            for t, name in enumerate(frame_names(spec["frames"])):
                write_index_png(folder / video / exp_id / f"{name}.png", prediction(video, exp_id, t).astype(np.uint8))
    return folder


@pytest.fixture(scope="module")
def predictions(mevis: MevisData, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_predictions(tmp_path_factory.mktemp("mevis-pred"), shifted_prediction)


def test_eval_masks_scores_every_expression_by_the_reference(
    mevis: MevisData, predictions: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "scores.csv"
    assert main(["eval-masks", "--task", "mevis", "--gt", str(mevis.root / "valid_u"), "--pred", str(predictions), "--csv", str(out)]) == 0
    expected = reference_scores(mevis, shifted_prediction)
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [tuple(row) for row in rows] == [("video", "exp_id", "J", "F")] * 7
    assert [(row["video"], row["exp_id"]) for row in rows] == list(expected)  # meta order
    for row in rows:
        j, f = expected[row["video"], row["exp_id"]]
        assert float(row["J"]) == pytest.approx(j, abs=1e-6) and float(row["F"]) == pytest.approx(f, abs=1e-6)
    assert 0 < expected["vid_b", "0"][0] < expected["vid_a", "0"][0] < 1 and expected["vid_b", "1"] == (2 / 3, 2 / 3)
    j, f = np.mean(list(expected.values()), axis=0)
    assert capsys.readouterr().out == f"MeViS protocol, 7 expressions of 2 videos: J={j:.4f} F={f:.4f} J&F={(j + f) / 2:.4f}\n"


def test_a_video_without_predictions_scores_zero_and_a_missing_frame_is_named(
    mevis: MevisData, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pred = write_predictions(tmp_path / "pred", shifted_prediction, videos=("vid_b",))
    videos = list(read_videos("mevis", mevis.root, "valid_u", with_boxes=False))
    scores = {(s.video, s.exp_id): (s.j, s.f, s.unpredicted) for s in score_videos(videos, pred)}
    expected = reference_scores(mevis, shifted_prediction)
    assert all(scores["vid_a", e] == (0.0, 0.0, True) for e in MEVIS_VIDEOS["vid_a"]["expressions"])  # as eval_mevis.py
    assert scores["vid_b", "0"][:2] == pytest.approx(expected["vid_b", "0"])
    assert main(["eval-masks", "--task", "mevis", "--gt", str(mevis.root / "valid_u"), "--pred", str(pred)]) == 0
    assert capsys.readouterr().out.endswith(" (1 videos without a prediction folder, scored 0)\n")
    (pred / "vid_b" / "1" / "00002.png").unlink()
    assert main(["eval-masks", "--task", "mevis", "--gt", str(mevis.root / "valid_u"), "--pred", str(pred)]) == 2
    assert (
        capsys.readouterr().err
        == f"error: {pred / 'vid_b' / '1' / '00002.png'}: prediction missing (its video's folder exists: every frame of every expression needs one)\n"
    )
    write_index_png(pred / "vid_b" / "1" / "00002.png", np.zeros((10, 10), np.uint8))
    with pytest.raises(DataError, match=r"00002\.png: prediction is 10x10 pixels, the video's frames are 128x96$"):
        score_videos(videos, pred)


def test_the_server_split_cannot_be_scored(mevis: MevisData, predictions: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval-masks", "--task", "mevis", "--gt", str(mevis.root / "valid"), "--pred", str(predictions)]) == 2
    assert "video 'vid_c': has no masks (mask_dict.json) to score against" in capsys.readouterr().err


def test_multi_object_sentences_through_evaluation_shards(mevis: MevisData, tmp_path: Path) -> None:
    """Oracle (union) boxes filled as masks: shard meta, per-expression rows and the protocol all use the union."""
    videos = list(read_videos("mevis", mevis.root, "valid_u", with_boxes=False))
    settings = ShardSettings(window=3, with_masks=True)
    shards = tmp_path / "shards"
    for plan in plan_shards(videos, settings):
        write_shard(plan, shards, settings)
    metas = [sample.meta for path in sorted(shards.glob("*.tar")) for sample in read_shard(path, with_images=False)]
    first = next(m for m in metas if m["key"] == "vid_a__00000")
    assert first["groups"] == {"4": [1, 2]} and first["boxes"]["4"][1] == [14, 12, 44, 32]
    assert all("groups" not in m for m in metas if m["video_id"] == "vid_b")
    # training reads the group's union box like any object's box: (10, 10, 100, 70), then (14, 12, 44, 32) without 102
    assert [e["exp_id"] for e in referring_expressions(first)] == ["0", "1", "2", "3", "4"]
    boxes, valid = normalised_boxes(first, 4, range(2))
    assert valid.all() and np.allclose(boxes, [[55 / 128, 40 / 96, 90 / 128, 60 / 96], [29 / 128, 22 / 96, 30 / 128, 20 / 96]])

    pngs = tmp_path / "pngs"
    partials = [
        row for path in sorted(shards.glob("*.tar")) for row in evaluate_shard(path, None, OracleBoxes(), build_segmentor("box"), pngs)
    ]
    table = merge_partials(partials).set_index(["video", "exp_id"])

    def filled_union_box(video: str, exp_id: str, t: int) -> np.ndarray:
        rects = [MEVIS_VIDEOS[video]["objects"][a][t] for a in MEVIS_VIDEOS[video]["expressions"][exp_id][1]]
        present = [r for r in rects if r is not None]
        return (
            rect_mask((min(r[0] for r in present), min(r[1] for r in present), max(r[2] for r in present), max(r[3] for r in present)))
            if present
            else np.zeros(MEVIS_SIZE, bool)
        )

    expected = reference_scores(mevis, filled_union_box)
    scores = {(s.video, s.exp_id): (s.j, s.f) for s in score_videos(videos, pngs)}
    assert list(scores) == list(expected) and np.allclose(list(scores.values()), list(expected.values()))
    assert expected["vid_a", "1"][0] < 1  # the union box holds background between the two birds
    # the per-expression rows score the id maps: the group's union agrees with the protocol; object 1 loses to object 2
    # the pixels they share in frame 2 there, not in the protocol's ground truth
    assert table.loc[("vid_a", "1"), "J"] == pytest.approx(expected["vid_a", "1"][0])
    assert table.loc[("vid_a", "0"), "J"] < expected["vid_a", "0"][0] == 1.0
    assert table.loc[("vid_a", "3"), "obj_id"] == 4 and table.loc[("vid_a", "4"), "J"] == pytest.approx(1.0)
    assert ("vid_b", "1") not in table.index  # no target: scored by the protocol only


def test_submission_zip_of_the_server_split(mevis: MevisData, tmp_path: Path) -> None:
    members = sorted(
        (video, exp_id, name)
        for video, spec in SERVER_VIDEOS.items()
        for exp_id in spec["expressions"]
        for name in frame_names(spec["frames"])
    )
    assert submission_members(read_videos("mevis", mevis.root, "valid", with_boxes=False)) == set(members)
    pngs = tmp_path / "pngs"
    for video, exp_id, name in members:
        write_index_png(pngs / video / exp_id / f"{name}.png", np.ones(MEVIS_SIZE, np.uint8))
    layout = submission_layout("mevis")
    assert write_submission_zip(tmp_path / "sub.zip", submission_masks(pngs), set(members), layout) == 4
    with zipfile.ZipFile(tmp_path / "sub.zip") as archive:
        assert sorted(archive.namelist()) == [f"{v}/{e}/{n}.png" for v, e, n in members]  # the video folders at the top
    (pngs / "vid_c" / "1" / "00000.png").unlink()
    with pytest.raises(
        DataError, match=r"incomplete MeViS submission, 3 masks written: 1 of the 4 expected masks missing \(first: vid_c/1/00000\.png\)$"
    ):
        write_submission_zip(tmp_path / "partial.zip", submission_masks(pngs), set(members), layout)
    assert not (tmp_path / "partial.zip").exists()
