"""Helpers that several test modules share (fixtures live in conftest.py files)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DAVIS_VIDEOS = ("blackswan", "libby")


def shared_data_dir() -> Path:
    """``../shared/data`` beside the checkout (override with GROPROMPT_SHARED_DATA)."""
    return Path(os.environ.get("GROPROMPT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def mini_davis(shared_data: Path, tmp_path: Path, videos: tuple[str, ...] = DAVIS_VIDEOS) -> Path:
    """A copy of some ref-davis-mini videos in the Ref-DAVIS17 layout (so tests may damage it)."""
    source = shared_data / "ref-davis-mini"
    root = tmp_path / "davis"
    meta = json.loads((source / "meta_expressions/valid/meta_expressions.json").read_text())
    meta["videos"] = {v: meta["videos"][v] for v in videos}
    (root / "meta_expressions/valid").mkdir(parents=True)
    (root / "meta_expressions/valid/meta_expressions.json").write_text(json.dumps(meta))
    for video in videos:
        for kind in ("JPEGImages", "Annotations"):
            shutil.copytree(source / "valid" / kind / video, root / "valid" / kind / video)
    return root
