"""``eval-masks`` end to end: real Ref-DAVIS annotations, perturbed copies, hand-made multi-object folders; the
unsupervised task against a brute-force reference."""

from __future__ import annotations

import csv
import itertools
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy import ndimage

from groprompt.cli import main
from groprompt.errors import DataError
from groprompt.evaluation.mask_folders import evaluate_folders, format_mean_row, global_means, write_csv
from groprompt.mask_io import read_index_png, write_index_png

SEQUENCES = ("blackswan", "breakdance", "car-shadow")
FRAMES_PER_SEQUENCE = 8


@pytest.fixture(scope="module")
def annotations(shared_data: Path) -> Path:
    return shared_data / "ref-davis-mini" / "valid" / "Annotations"


@pytest.fixture(scope="module")
def gt_subset(annotations: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first frames of three real sequences."""
    root = tmp_path_factory.mktemp("gt")
    for name in SEQUENCES:
        (root / name).mkdir()
        for frame in sorted((annotations / name).glob("*.png"))[:FRAMES_PER_SEQUENCE]:
            shutil.copy(frame, root / name / frame.name)
    return root


def perturb(ids: np.ndarray, t: int) -> np.ndarray:
    """A degraded prediction of object 1, different for each frame index t."""
    mask = (ids == 1).astype(np.uint8)
    kind = t % 4
    if kind == 0:
        mask = cv2.erode(mask, np.ones((9, 9), np.uint8))
    elif kind == 1:
        mask = np.zeros_like(mask)
        mask[6:, :-15] = (ids == 1)[:-6, 15:]  # shifted down 6 and left 15 pixels
    elif kind == 2:
        mask = cv2.dilate(mask, np.ones((5, 5), np.uint8))
        mask[: mask.shape[0] // 2] = 0  # top half lost
    out = mask.astype(np.int32)
    out[:20, :20] = 3  # an id the ground truth does not have: ignored
    return out


def reference_boundary(mask: np.ndarray) -> np.ndarray:
    """seg2bmap: compare with the right, lower and lower-right neighbours that lie inside the image."""
    padded = np.pad(mask, ((0, 1), (0, 1)), mode="edge")
    h, w = mask.shape
    centre = padded[:h, :w]
    return (centre != padded[:h, 1:]) | (centre != padded[1:, :w]) | (centre != padded[1:, 1:])


def reference_j_f(gt: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """J by counting; F with Euclidean distance transforms (a match lies within ceil(0.008 * diagonal))."""
    union = np.sum(gt | pred)
    j = 1.0 if union == 0 else np.sum(gt & pred) / union
    gt_b, pred_b = reference_boundary(gt), reference_boundary(pred)
    if not gt_b.any() or not pred_b.any():
        return j, float(gt_b.any() == pred_b.any())
    radius = np.ceil(0.008 * np.hypot(*gt.shape))
    precision = np.mean(ndimage.distance_transform_edt(~gt_b)[pred_b] <= radius)
    recall = np.mean(ndimage.distance_transform_edt(~pred_b)[gt_b] <= radius)
    return j, 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


@pytest.fixture(scope="module")
def perturbed(gt_subset: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, tuple]]:
    """Perturbed predictions of ``gt_subset`` and the expected (J, F) of each sequence."""
    root = tmp_path_factory.mktemp("pred")
    expected = {}
    for name in SEQUENCES:
        values = []
        for t, frame in enumerate(sorted((gt_subset / name).glob("*.png"))):
            gt = read_index_png(frame)
            pred = perturb(gt, t)
            write_index_png(root / name / frame.name, pred)
            values.append(reference_j_f(gt == 1, pred == 1))
        expected[name] = tuple(np.mean(values, axis=0))
    write_index_png(root / SEQUENCES[0] / "99999.png", np.zeros((4, 4)))  # an extra frame: ignored
    return root, expected


def test_real_annotations_against_themselves(annotations: Path) -> None:
    scores = evaluate_folders(annotations, annotations)
    assert [s.sequence for s in scores] == sorted(p.name for p in annotations.iterdir())
    assert len(scores) == 8
    for s in scores:
        assert s.n_frames == len(list((annotations / s.sequence).glob("*.png")))  # every frame counts
        assert s.object_ids == (1,)
        assert s.j_mean == 1.0 and s.f_mean == 1.0 and s.jf_mean == 1.0
    assert global_means(scores) == {"J_mean": 1.0, "F_mean": 1.0, "JF_mean": 1.0}


def test_perturbed_predictions_match_reference(gt_subset: Path, perturbed: tuple[Path, dict]) -> None:
    pred_root, expected = perturbed
    scores = evaluate_folders(gt_subset, pred_root)
    assert [s.sequence for s in scores] == list(SEQUENCES)
    for s in scores:
        j, f = expected[s.sequence]
        assert s.n_frames == FRAMES_PER_SEQUENCE
        assert s.object_ids == (1,)
        assert s.j_mean == pytest.approx(j, abs=1e-12)
        assert s.f_mean == pytest.approx(f, abs=1e-12)
        assert 0.2 < s.j_mean < 0.95 and 0.2 < s.f_mean < 0.95
    j_all = np.mean([expected[n][0] for n in SEQUENCES])
    f_all = np.mean([expected[n][1] for n in SEQUENCES])
    assert global_means(scores) == pytest.approx({"J_mean": j_all, "F_mean": f_all, "JF_mean": (j_all + f_all) / 2})
    # Parallel and serial runs agree.
    assert evaluate_folders(gt_subset, pred_root, workers=1) == scores


def test_csv_round_trip(gt_subset: Path, perturbed: tuple[Path, dict], tmp_path: Path) -> None:
    pred_root, expected = perturbed
    out = tmp_path / "sub" / "scores.csv"
    write_csv(evaluate_folders(gt_subset, pred_root), out)
    with out.open(newline="") as handle:
        header = next(csv.reader(handle))
        handle.seek(0)
        rows = list(csv.DictReader(handle))
    assert header == ["sequence", "n_frames", "J_mean", "F_mean", "JF_mean"]
    assert [row["sequence"] for row in rows] == list(SEQUENCES)
    for row in rows:
        j, f = expected[row["sequence"]]
        assert int(row["n_frames"]) == FRAMES_PER_SEQUENCE
        assert float(row["J_mean"]) == pytest.approx(j, abs=1e-6)
        assert float(row["F_mean"]) == pytest.approx(f, abs=1e-6)
        assert float(row["JF_mean"]) == pytest.approx((j + f) / 2, abs=1e-6)


def write_sequence(root: Path, name: str, frames: list[np.ndarray]) -> None:
    for t, ids in enumerate(frames):
        write_index_png(root / name / f"{t:05d}.png", ids)


def boxes(shape: tuple[int, int], *placed: tuple[int, int, int, int, int]) -> np.ndarray:
    """An id map with (id, top, left, height, width) rectangles."""
    ids = np.zeros(shape, dtype=np.int32)
    for obj, top, left, height, width in placed:
        ids[top : top + height, left : left + width] = obj
    return ids


def test_objects_and_means_by_hand(tmp_path: Path) -> None:
    shape = (20, 30)
    a, b, c = (1, 2, 2, 6, 8), (2, 12, 15, 5, 10), (2, 10, 2, 4, 4)
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    # "two": object 2 appears only in the last frame; the prediction has it in the wrong frame, loses
    # object 1 in frame 1, and adds id 3, which the ground truth never has.
    write_sequence(gt, "two", [boxes(shape, a), boxes(shape, a), boxes(shape, a, b)])
    write_sequence(pred, "two", [boxes(shape, a, c), boxes(shape, (3, 0, 0, 3, 3)), boxes(shape, a)])
    # "one": perfect, and the prediction's spill into the ground truth's void (255) region is not counted.
    void_gt = boxes(shape, a, (255, 10, 10, 6, 6))
    write_sequence(gt, "one", [void_gt, void_gt])
    write_sequence(pred, "one", [boxes(shape, a, (1, 10, 10, 6, 6))] * 2)

    one, two = evaluate_folders(gt, pred)
    assert (one.sequence, two.sequence) == ("one", "two")
    assert one.object_ids == (1,) and one.j == (1.0,) and one.f == (1.0,)
    # object 1: frames score 1, 0, 1; object 2: 0 (spurious), 1 (absent from both), 0 (missed)
    assert two.object_ids == (1, 2)
    assert two.j == pytest.approx((2 / 3, 1 / 3)) and two.f == pytest.approx((2 / 3, 1 / 3))
    assert two.jf_mean == pytest.approx(0.5)
    # Global means run over the three (sequence, object) pairs, not over the two sequence rows.
    means = global_means([one, two])
    assert means == pytest.approx({"J_mean": 2 / 3, "F_mean": 2 / 3, "JF_mean": 2 / 3})
    line = format_mean_row([one, two])
    assert "2 sequences, 3 objects, 5 frames" in line and "JF_mean=0.6667" in line


@pytest.fixture()
def small_pair(tmp_path: Path) -> tuple[Path, Path]:
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    frames = [boxes((20, 30), (1, 2, 2, 6, 8)), boxes((20, 30), (1, 3, 3, 6, 8))]
    write_sequence(gt, "seq", frames)
    write_sequence(pred, "seq", frames)
    return gt, pred


def test_missing_prediction_frame_names_the_file(small_pair: tuple[Path, Path]) -> None:
    gt, pred = small_pair
    (pred / "seq" / "00001.png").unlink()
    with pytest.raises(DataError, match=r"seq/00001\.png: prediction frame is missing"):
        evaluate_folders(gt, pred)


def test_missing_prediction_sequence_names_the_folder(small_pair: tuple[Path, Path]) -> None:
    gt, pred = small_pair
    shutil.rmtree(pred / "seq")
    with pytest.raises(DataError, match=r"pred/seq: prediction sequence folder is missing"):
        evaluate_folders(gt, pred)
    with pytest.raises(DataError, match="prediction folder is missing"):
        evaluate_folders(gt, pred / "nowhere")


def test_size_mismatch_names_the_file(small_pair: tuple[Path, Path]) -> None:
    gt, pred = small_pair
    write_index_png(pred / "seq" / "00000.png", np.zeros((20, 31), dtype=np.int32))
    with pytest.raises(DataError, match=r"seq/00000\.png: size 31x20 differs from the ground truth's 30x20"):
        evaluate_folders(gt, pred)


def test_unreadable_files_name_the_file(small_pair: tuple[Path, Path]) -> None:
    gt, pred = small_pair
    (pred / "seq" / "00001.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"seq/00001\.png: unreadable"):
        evaluate_folders(gt, pred)
    cv2.imwrite(str(pred / "seq" / "00001.png"), np.zeros((20, 30, 3), np.uint8))  # RGB, not palette
    with pytest.raises(DataError, match=r"seq/00001\.png: expected a palette"):
        evaluate_folders(gt, pred)


def test_ground_truth_without_objects_is_an_error(tmp_path: Path) -> None:
    write_sequence(tmp_path / "gt", "blank", [np.zeros((5, 5), dtype=np.int32)])
    write_sequence(tmp_path / "pred", "blank", [np.zeros((5, 5), dtype=np.int32)])
    with pytest.raises(DataError, match="blank: no object id"):
        evaluate_folders(tmp_path / "gt", tmp_path / "pred")


def test_cli_eval_masks(gt_subset: Path, perturbed: tuple[Path, dict], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pred_root, expected = perturbed
    out = tmp_path / "scores.csv"
    assert main(["eval-masks", "--gt", str(gt_subset), "--pred", str(pred_root), "--csv", str(out)]) == 0
    j_all = np.mean([expected[n][0] for n in SEQUENCES])
    printed = capsys.readouterr().out
    assert f"3 sequences, 3 objects, {3 * FRAMES_PER_SEQUENCE} frames" in printed
    assert f"J_mean={j_all:.4f}" in printed
    assert len(out.read_text().splitlines()) == 1 + len(SEQUENCES)


def test_cli_eval_masks_reports_data_errors(small_pair: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    gt, pred = small_pair
    (pred / "seq" / "00000.png").unlink()
    assert main(["eval-masks", "--gt", str(gt), "--pred", str(pred)]) == 2
    assert "seq/00000.png: prediction frame is missing" in capsys.readouterr().err


# --- the unsupervised task ------------------------------------------------------------------------------------


def reference_unsupervised(gt_frames: list[np.ndarray], pred_frames: list[np.ndarray]) -> tuple[list[float], list[float]]:
    """davis2017-evaluation's unsupervised task by brute force: ground-truth objects 1..max of the first frame,
    predicted objects 1..max of any frame (padded with empty ones), the best of all assignments on mean J&F;
    returns the matched (J, F) means of each ground-truth object."""
    n_gt = int(gt_frames[0].max())
    n_pred = max(n_gt, max(int(p.max()) for p in pred_frames))
    means = np.array(
        [
            [np.mean([reference_j_f(g == i, p == k) for g, p in zip(gt_frames, pred_frames)], axis=0) for i in range(1, n_gt + 1)]
            for k in range(1, n_pred + 1)
        ]
    )  # (pred, gt, 2)
    best = max(itertools.permutations(range(n_pred), n_gt), key=lambda chosen: sum(means[k, i].mean() for i, k in enumerate(chosen)))
    return [means[k, i, 0] for i, k in enumerate(best)], [means[k, i, 1] for i, k in enumerate(best)]


def test_unsupervised_matches_a_brute_force_reference_on_real_masks(gt_subset: Path, tmp_path: Path) -> None:
    # Real breakdance masks cut into two objects (left and right of the mask's middle column); the prediction
    # labels a degraded object 1 as id 3 and object 2 as id 1, and adds a spurious id 2.
    gt_frames, pred_frames = [], []
    for t, frame in enumerate(sorted((gt_subset / "breakdance").glob("*.png"))[:4]):
        person = read_index_png(frame) == 1
        middle = int(np.median(np.nonzero(person)[1]))
        gt = np.where(person, 1, 0)
        gt[:, middle:] *= 2
        pred = np.zeros_like(gt)
        pred[perturb(gt == 1, t) == 1] = 3
        pred[cv2.dilate((gt == 2).astype(np.uint8), np.ones((7, 7), np.uint8)) > 0] = 1
        pred[:40, :60] = 2
        gt_frames.append(gt)
        pred_frames.append(pred)
        write_index_png(tmp_path / "gt" / "bd" / frame.name, gt)
        write_index_png(tmp_path / "pred" / "bd" / frame.name, pred)
    (scores,) = evaluate_folders(tmp_path / "gt", tmp_path / "pred", task="unsupervised")
    j, f = reference_unsupervised(gt_frames, pred_frames)
    assert scores.object_ids == (1, 2) and scores.n_frames == 4
    assert scores.j == pytest.approx(tuple(j), abs=1e-12) and scores.f == pytest.approx(tuple(f), abs=1e-12)
    assert min(scores.j) > 0.5  # the matching found the relabelled objects
    (identity,) = evaluate_folders(tmp_path / "gt", tmp_path / "pred")
    assert max(identity.j) < 0.2  # identity matching compares object 1 with the spurious id 1


def test_unsupervised_protocol_details_by_hand(tmp_path: Path) -> None:
    shape = (20, 30)
    a, b, c = (1, 2, 2, 4, 4), (2, 12, 15, 5, 10), (3, 10, 2, 4, 4)
    # Ground-truth objects come from the first frame: id 3 appears only in frame 1 and is not an object.
    # The prediction names object 1 as id 2 and misses object 2, which is then an empty prediction: J = F = 0.
    write_sequence(tmp_path / "gt", "s", [boxes(shape, a, b), boxes(shape, a, b, c)])
    write_sequence(tmp_path / "pred", "s", [boxes(shape, (2, 2, 2, 4, 4))] * 2)
    # Void: 255 in the ground truth counts as background here: object 1 (16 px) predicted with the 4 void
    # pixels beside it scores J = 16/20 (identity matching ignores void: J = 1).
    write_sequence(tmp_path / "gt", "v", [boxes(shape, a, (255, 2, 6, 4, 1))])
    write_sequence(tmp_path / "pred", "v", [boxes(shape, (1, 2, 2, 4, 5))])
    s, v = evaluate_folders(tmp_path / "gt", tmp_path / "pred", task="unsupervised")
    assert s.object_ids == (1, 2) and s.j == (1.0, 0.0) and s.f == (1.0, 0.0)
    assert v.j == pytest.approx((16 / 20,))
    assert evaluate_folders(tmp_path / "gt", tmp_path / "pred", sequences=["v"])[0].j == (1.0,)
    write_sequence(tmp_path / "pred", "v", [boxes(shape, (21, 2, 2, 4, 4))])
    with pytest.raises(DataError, match="object id 21"):
        evaluate_folders(tmp_path / "gt", tmp_path / "pred", task="unsupervised", sequences=["v"])


def test_cli_eval_masks_unsupervised(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shape = (20, 30)
    write_sequence(tmp_path / "gt", "s", [boxes(shape, (1, 2, 2, 6, 8), (2, 12, 15, 5, 10))])
    write_sequence(tmp_path / "pred", "s", [boxes(shape, (2, 2, 2, 6, 8), (1, 12, 15, 5, 10))])  # ids swapped
    assert main(["eval-masks", "--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "pred"), "--task", "unsupervised"]) == 0
    assert "J_mean=1.0000 F_mean=1.0000 JF_mean=1.0000" in capsys.readouterr().out
    assert main(["eval-masks", "--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "pred")]) == 0
    assert "J_mean=0.0000" in capsys.readouterr().out
