"""The ``groprompt`` console script: its sub-commands, and user errors as one line on stderr with exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from groprompt.cli import main
from groprompt.evaluation.report import ablation_report
from tests.bad_inputs import break_json, point_at_absent_object, remove_png, short_davis
from tests.helpers import RESULTS


def summary_rows(folder: Path) -> list[str]:
    """``--row NAME=PATH`` arguments for every entry of ``RESULTS``, each summary written under ``folder``."""
    rows = []
    for index, (name, summary) in enumerate(RESULTS.items()):
        (folder / f"{index}.json").write_text(json.dumps(summary))
        rows += ["--row", f"{name}={folder / f'{index}.json'}"]
    return rows


def test_cli_makes_refshapes(tmp_path: Path) -> None:
    args = ["make-refshapes", "--out", str(tmp_path), "--videos", "3", "--frames", "4", "--size", "96", "--seed", "5"]
    assert main(args) == 0
    meta = json.loads((tmp_path / "meta_expressions" / "train" / "meta_expressions.json").read_text())
    assert len(meta["videos"]) == 2 and (tmp_path / "valid" / "JPEGImages").is_dir()
    assert main(args) == 0
    assert main(args[:-1] + ["6"]) == 2


def test_report_writes_the_markdown_file_with_every_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", *summary_rows(tmp_path), "--out", str(tmp_path / "out" / "report.md")]) == 0
    text = (tmp_path / "out" / "report.md").read_text()
    assert text == ablation_report(RESULTS)
    assert all(f"| {name} |" in text for name in RESULTS)
    assert "L_box + L_contra" in capsys.readouterr().out


def test_report_of_a_missing_summary_exits_2_with_one_line_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "absent" / "summary.json"
    assert main(["report", "--row", f"a={missing}", "--out", str(tmp_path / "report.md")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and str(missing) in error
    assert not (tmp_path / "report.md").exists()


def test_report_row_without_a_name_is_a_one_line_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--row", str(tmp_path / "summary.json"), "--out", str(tmp_path / "report.md")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "expected NAME=PATH" in error


def test_eval_masks_task_is_one_of_the_two_davis_tasks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["eval-masks", "--gt", str(tmp_path), "--pred", str(tmp_path), "--task", "zero-shot"])
    assert stopped.value.code == 2 and "invalid choice: 'zero-shot'" in capsys.readouterr().err
    assert main(["eval-masks", "--gt", str(tmp_path / "gt"), "--pred", str(tmp_path), "--task", "unsupervised"]) == 2
    assert "ground-truth folder is missing" in capsys.readouterr().err


def test_inspect_check_lists_each_video_the_shard_stage_would_refuse_and_writes_nothing(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = short_davis(shared_data, tmp_path)
    damaged = [remove_png(root, "blackswan", index=1), point_at_absent_object(root, "libby")]
    before = sorted(tmp_path.rglob("*"))
    assert main(["inspect", "ref-davis17", str(root), "--check"]) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        f"error: {damaged[0]}: annotation missing (its video has an annotation folder, and the frame is listed)",
        f"error: {damaged[1]}: video 'libby': expression '0' (object 7): the object has a mask in none of the video's annotated frames",
    ]
    assert captured.out == f"{root}: 2 videos of split valid checked, 2 refused by the shard stage\n"
    assert sorted(tmp_path.rglob("*")) == before


def test_inspect_check_of_a_sound_dataset_exits_0(shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = short_davis(shared_data, tmp_path)
    assert main(["inspect", "ref-davis17", str(root), "--check"]) == 0
    assert capsys.readouterr() == (f"{root}: 2 videos of split valid checked, 0 refused by the shard stage\n", "")


def test_inspect_check_of_a_broken_annotation_file_is_one_line(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = short_davis(shared_data, tmp_path)
    damaged = break_json(root)
    assert main(["inspect", "ref-davis17", str(root), "--check"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith(f"error: {damaged}: invalid JSON")
