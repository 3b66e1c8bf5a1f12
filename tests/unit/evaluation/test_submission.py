"""The Ref-YouTube-VOS submission zip from an evaluation's PNGs, complete against the split's meta."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pandas as pd

from groprompt.data.formats import read_videos
from groprompt.evaluation.submission import submission_masks, submission_members
from groprompt.mask_io import write_submission_zip


def test_submission_holds_every_png_of_every_expression(
    oracle_grabcut: tuple[pd.DataFrame, Path], shards: tuple[Path, Path], tmp_path: Path
) -> None:
    table, png_dir = oracle_grabcut
    root = shards[0].parent / "refshapes"  # the dataset the shared shards were cut from (both splits)
    expected = {
        member for split in ("train", "valid") for member in submission_members(read_videos("refshapes", root, split, with_boxes=False))
    }
    count = write_submission_zip(tmp_path / "sub.zip", submission_masks(png_dir), expected)
    with zipfile.ZipFile(tmp_path / "sub.zip") as archive:
        names = sorted(archive.namelist())
    expected_names = sorted(f"Annotations/{p.relative_to(png_dir).as_posix()}" for p in png_dir.rglob("*.png"))
    assert names == expected_names and count == len(table) * 4 == len(expected)
    assert all(len(n.split("/")) == 4 and n.endswith(".png") for n in names)
