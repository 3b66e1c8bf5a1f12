"""The MeViS reader on a tiny dataset in the real layout: records, targets of multi-object sentences, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from groprompt.cli import main
from groprompt.config import load_config
from groprompt.data.formats import check_training_splits, dataset_summary, read_videos
from groprompt.data.formats.mevis import RleMasks, split_has_masks
from groprompt.errors import ConfigError, DataError
from tests.helpers import REPO_ROOT, upload_tree
from tests.unit.conftest import MEVIS_SIZE, MEVIS_VIDEOS, MevisData, encoded, rect_mask


def union_box(rects: list) -> tuple[float, ...] | None:
    """The box around rectangles (None: absent), by hand."""
    present = [r for r in rects if r is not None]
    if not present:
        return None
    return (min(r[0] for r in present), min(r[1] for r in present), max(r[2] for r in present), max(r[3] for r in present))


def test_records_targets_and_union_boxes(mevis: MevisData) -> None:
    videos = {v.video_id: v for v in read_videos("mevis", mevis.root, "valid_u")}
    a, b = videos["vid_a"], videos["vid_b"]
    assert (a.dataset, a.split, a.frame_names, (a.height, a.width)) == (
        "mevis",
        "valid_u",
        ("00000", "00001", "00002", "00003"),
        MEVIS_SIZE,
    )
    # objects 1..3 are anno_ids 101, 102, 103; the two-bird sentences share one group, 4, whatever the order
    assert [(e.exp_id, e.text, e.obj_id) for e in a.expressions] == [
        ("0", "the bird flying away", 1),
        ("1", "the two birds", 4),
        ("2", "the bird landing", 2),
        ("3", "both birds moving", 4),
        ("4", "the ball rolling left", 3),
    ]
    assert a.groups == {4: (1, 2)} and a.object_ids == (1, 2, 3, 4)
    objects = MEVIS_VIDEOS["vid_a"]["objects"]
    assert a.boxes[4] == tuple(union_box([objects[101][t], objects[102][t]]) for t in range(4))
    assert a.boxes[4][1] == (14, 12, 44, 32) and a.boxes[4][3] == (60, 50, 90, 80)  # one of the two objects absent
    assert a.boxes[2] == tuple(union_box([r]) for r in objects[102])
    assert (
        [e.obj_id for e in b.expressions] == [1, None] and b.groups == {} and b.boxes == {1: tuple(MEVIS_VIDEOS["vid_b"]["objects"][201])}
    )


def test_masks_id_maps_and_exact_unions(mevis: MevisData) -> None:
    video = next(v for v in read_videos("mevis", mevis.root, "valid_u", with_boxes=False) if v.video_id == "vid_a")
    masks = video.masks
    assert isinstance(masks, RleMasks) and masks.file(0) == mevis.root / "valid_u" / "mask_dict.json"
    objects = MEVIS_VIDEOS["vid_a"]["objects"]
    one, two, three = (rect_mask(objects[anno][2]) for anno in (101, 102, 103))
    ids = masks.read(2)
    assert ids.dtype == np.int32 and ids.shape == MEVIS_SIZE
    assert np.array_equal(ids == 2, two) and np.array_equal(ids == 3, three)
    assert np.array_equal(ids == 1, one & ~two)  # where objects overlap the higher id takes the pixel
    assert np.array_equal(masks.union((1,), 2), one)  # the protocol's ground truth keeps the whole object
    assert np.array_equal(masks.union((1, 2), 2), one | two) and not masks.union((), 2).any()
    assert not (masks.read(3) == 1).any()  # anno 101 is null in frame 3


def test_the_server_split_has_no_targets(mevis: MevisData) -> None:
    (video,) = read_videos("mevis", mevis.root, "valid")
    assert video.masks is None and video.boxes == {} and [e.obj_id for e in video.expressions] == [None, None]


def test_train_holds_out_videos_and_the_valid_splits_are_test_splits(mevis: MevisData) -> None:
    train = {v.video_id for v in read_videos("mevis", mevis.root, "train", with_boxes=False)}
    holdout = {v.video_id for v in read_videos("mevis", mevis.root, "train-holdout", with_boxes=False)}
    fit = {v.video_id for v in read_videos("mevis", mevis.root, "train-fit", with_boxes=False)}
    assert train == {"train_vid_5", "train_vid_0"} and holdout == {"train_vid_5"} and fit == {"train_vid_0"}  # sha256(id) < 10%
    for split in ("valid_u-holdout", "valid-fit"):
        with pytest.raises(DataError, match=f"split '{split}': .* is a test split of mevis"):
            read_videos("mevis", mevis.root, split)


def test_shipped_configuration_validates_on_held_out_training_videos() -> None:
    conf = [REPO_ROOT / "conf" / "base.yaml", REPO_ROOT / "conf" / "data" / "mevis.yaml"]
    data = load_config(conf).data
    assert (data.format, data.split, data.val_split) == ("mevis", "train-fit", "train-holdout")
    check_training_splits(data)
    with pytest.raises(ConfigError, match=r"^data\.val_split: 'valid_u' is a test split of mevis"):
        check_training_splits(load_config(conf, ["data.val_split=valid_u"]).data)


def test_cli_inspect(mevis: MevisData, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", "mevis", str(mevis.root), "--split", "valid_u", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"videos": 2, "expressions": 7, "frames": 7}
    assert dataset_summary("mevis", mevis.root) == {"videos": 2, "expressions": 7, "frames": 7}  # valid_u by default
    assert dataset_summary("mevis", mevis.root, "valid") == {"videos": 1, "expressions": 2, "frames": 2}


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_an_anno_id_missing_from_the_mask_dict_is_named(mevis_copy: MevisData, capsys: pytest.CaptureFixture[str]) -> None:
    mask_dict = mevis_copy.root / "valid_u" / "mask_dict.json"
    edit_json(mask_dict, lambda data: data.pop("102"))
    assert main(["inspect", "mevis", str(mevis_copy.root), "--split", "valid_u"]) == 2
    assert capsys.readouterr().err == f"error: {mask_dict}: anno_id 102 (video 'vid_a'): missing, but an expression of the video names it\n"


def test_an_rle_of_another_size_is_named(mevis_copy: MevisData) -> None:
    mask_dict = mevis_copy.root / "valid_u" / "mask_dict.json"
    edit_json(mask_dict, lambda data: data["201"].__setitem__(1, encoded(np.ones((MEVIS_SIZE[0] + 1, MEVIS_SIZE[1]), bool))))
    with pytest.raises(DataError) as error:
        list(read_videos("mevis", mevis_copy.root, "valid_u", with_boxes=False))
    assert (
        str(error.value) == f"{mask_dict}: anno_id 201 (video 'vid_b'), frame 00001: mask is 128x97 pixels, the video's frames are 128x96"
    )


def test_a_mask_list_of_another_length_is_named(mevis_copy: MevisData) -> None:
    mask_dict = mevis_copy.root / "valid_u" / "mask_dict.json"
    edit_json(mask_dict, lambda data: data["103"].pop())
    with pytest.raises(DataError, match=r"anno_id 103 \(video 'vid_a'\): 3 masks, but the video has 4 frames$"):
        list(read_videos("mevis", mevis_copy.root, "valid_u"))


def test_frames_that_disagree_with_the_jpegs_are_named(mevis_copy: MevisData) -> None:
    folder = mevis_copy.root / "valid_u" / "JPEGImages" / "vid_a"
    meta = mevis_copy.root / "valid_u" / "meta_expressions.json"
    (folder / "00002.jpg").unlink()
    Image.fromarray(np.zeros((*MEVIS_SIZE, 3), np.uint8)).save(folder / "00009.jpg")
    with pytest.raises(DataError) as error:
        list(read_videos("mevis", mevis_copy.root, "valid_u"))
    assert str(error.value) == (
        f"{folder}: disagrees with the frames list of {meta}: 1 of its 4 frames have no JPEG (first: 00002.jpg); "
        "1 JPEGs are not listed (first: 00009.jpg)"
    )


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda d: d["videos"]["vid_b"]["expressions"]["0"].pop("anno_id"),
            r"expression '0': \"anno_id\" must be a list of annotation ids, got None",
        ),
        (lambda d: d["videos"]["vid_b"]["expressions"]["0"].__setitem__("exp", "  "), r"expression '0': has no \"exp\" sentence"),
        (lambda d: d["videos"]["vid_b"]["frames"].append("00000"), r"video 'vid_b': lists a frame twice"),
    ],
    ids=["no anno_id list", "empty sentence", "a frame twice"],
)
def test_malformed_meta_entries_are_named(mevis_copy: MevisData, change, message: str) -> None:
    meta = mevis_copy.root / "valid_u" / "meta_expressions.json"
    edit_json(meta, change)
    with pytest.raises(DataError, match=f"^{meta}: .*{message}"):
        read_videos("mevis", mevis_copy.root, "valid_u")


def test_a_split_with_masks_needs_its_mask_dict(mevis_copy: MevisData) -> None:
    (mevis_copy.root / "train" / "mask_dict.json").unlink()
    with pytest.raises(DataError, match=r"train/mask_dict.json: missing \(expected the MeViS masks of the split"):
        read_videos("mevis", mevis_copy.root, "train")


def test_which_splits_have_masks(mevis: MevisData) -> None:
    assert [split_has_masks(mevis.root, s) for s in ("valid_u", "train-holdout", "valid", "nowhere")] == [True, True, False, False]


def test_a_dataset_in_a_bucket_reads_as_it_does_from_disk(mevis: MevisData, bucket: str) -> None:
    """``data.root`` in object storage: the same videos, boxes, frames and masks as on local disk."""
    upload_tree(mevis.root, f"{bucket}/mevis")
    for split in ("valid_u", "valid"):
        local = list(read_videos("mevis", mevis.root, split))
        remote = list(read_videos("mevis", f"{bucket}/mevis", split))
        assert [(v.video_id, v.frame_names, v.expressions, v.boxes, v.height, v.width) for v in remote] == [
            (v.video_id, v.frame_names, v.expressions, v.boxes, v.height, v.width) for v in local
        ]
        for near, far in zip(local, remote):
            assert far.frames is not None and str(far.frames.file(1)).startswith(f"{bucket}/mevis/{split}/JPEGImages/")
            assert np.array_equal(far.frames.read(1), near.frames.read(1))
            assert (far.masks is None) == (near.masks is None)
            if near.masks is not None:
                assert np.array_equal(far.masks.read(2), near.masks.read(2))
    assert split_has_masks(f"{bucket}/mevis", "valid_u") and not split_has_masks(f"{bucket}/mevis", "valid")
