"""The Ref-YouTube-VOS submission zip from an evaluation's PNGs."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pandas as pd

from groprompt.evaluation.submission import submission_masks
from groprompt.outputs import write_submission_zip


def test_submission_holds_every_png_of_every_expression(oracle_grabcut: tuple[pd.DataFrame, Path], tmp_path: Path) -> None:
    table, png_dir = oracle_grabcut
    count = write_submission_zip(tmp_path / "sub.zip", submission_masks(png_dir))
    with zipfile.ZipFile(tmp_path / "sub.zip") as archive:
        names = sorted(archive.namelist())
    expected = sorted(f"Annotations/{p.relative_to(png_dir).as_posix()}" for p in png_dir.rglob("*.png"))
    assert names == expected and count == len(table) * 4
    assert all(len(n.split("/")) == 4 and n.endswith(".png") for n in names)
