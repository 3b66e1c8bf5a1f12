"""The demo end to end in a small setting: every row of the ablation table is filled; a re-run reuses stages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from groprompt.config import load_config, with_absolute_paths
from groprompt.stages.demo import run_demo
from tests.helpers import REPO_ROOT

DEFAULT_CONFIG = REPO_ROOT / "conf" / "demo.yaml"

pytestmark = pytest.mark.slow


def test_demo_fills_the_ablation_table_and_reuses_stages(local_ray: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    overrides = [
        f"data.root={tmp_path / 'data'}", f"data.shards={tmp_path / 'shards'}", f"data.embeddings={tmp_path / 'embeddings'}",
        f"train.storage_path={tmp_path / 'runs'}", f"runtime.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}", "train.epochs=1",
    ]
    config = with_absolute_paths(load_config([DEFAULT_CONFIG], overrides))
    sweep_file = DEFAULT_CONFIG.parent / "sweep" / "demo.yaml"
    report = run_demo(config, videos=12, frames=8, sweep_config=sweep_file)
    rows = [line for line in report.splitlines() if line.startswith("| L_box") or line.startswith("| GT box")]
    assert len(rows) >= 3 * 5  # three methods, overall and for each of the four expression types
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")][1:]
        assert len(cells) == 4 and all(re.fullmatch(r"\d+\.\d", cell) for cell in cells), row
    assert "| GT box + grabcut | 100.0 |" in report
    assert "RANDOM" in capsys.readouterr().out  # says plainly that the SAM has random weights

    again = run_demo(config, videos=12, frames=8, sweep_config=sweep_file)
    assert again == report
    assert capsys.readouterr().out.count("done before, reusing") >= 9
