"""The demo end to end in a small setting: every row of the ablation table is filled, overlay GIFs are written; a re-run
reuses stages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from groprompt.config import load_config, with_absolute_paths
from groprompt.evaluation.report import ROW_SENTENCE_BLIND
from groprompt.stages.demo import OVERLAY_VIDEOS, run_demo
from tests.helpers import REPO_ROOT

DEFAULT_CONFIG = REPO_ROOT / "conf" / "demo.yaml"

pytestmark = pytest.mark.slow


def test_demo_fills_the_ablation_table_and_reuses_stages(local_ray: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    overrides = [
        f"data.root={tmp_path / 'data'}",
        f"data.shards={tmp_path / 'shards'}",
        f"data.embeddings={tmp_path / 'embeddings'}",
        f"train.storage_path={tmp_path / 'runs'}",
        f"runtime.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
        "train.epochs=1",
    ]
    config = with_absolute_paths(load_config([DEFAULT_CONFIG], overrides))
    # the sweep stage is left out here (tests/integration/test_train_pipeline.py runs a sweep): it would double
    # this test's time, and the suite must stay under 20 minutes on 2 cores
    report = run_demo(config, tmp_path, videos=12, frames=4, sweep_config=None)
    methods = ("| L_box only |", "| L_box + L_contra |", f"| {ROW_SENTENCE_BLIND} |", "| GT box + grabcut |")
    rows = [line for line in report.splitlines() if line.startswith(methods)]
    kinds = report.count("## Expression type:")
    assert kinds >= 1 and len(rows) == 4 * (1 + kinds)  # two models and two references, overall and per expression type
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")][1:]
        assert len(cells) == 4 and all(re.fullmatch(r"\d+\.\d", cell) for cell in cells), row
    assert "| GT box + grabcut | 100.0 |" in report
    assert "RANDOM" in capsys.readouterr().out  # says plainly that the SAM has random weights
    gifs = sorted((tmp_path / "overlays").glob("*.gif"))
    assert len({gif.name.split("__")[0] for gif in gifs}) == OVERLAY_VIDEOS

    again = run_demo(config, tmp_path, videos=12, frames=4, sweep_config=None)
    assert again == report
    assert capsys.readouterr().out.count("done before, reusing") >= 9
