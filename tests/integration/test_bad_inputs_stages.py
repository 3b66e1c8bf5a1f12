"""``pipelines/shard.py`` run as a user runs it, on broken copies of real data (``tests.bad_inputs``).

Refused: exit code 2, one ``error:`` line naming the file, no traceback. With ``--skip-bad``: exit 0, the bad
videos listed in the manifest and the good one sharded.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from groprompt.data.manifest import MANIFEST, read_manifest
from tests.bad_inputs import blank_sentence, empty_jpeg, short_davis, shrink_png
from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.slow

VIDEOS = ("blackswan", "cows", "libby")


def shard(root: Path, out: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "pipelines/shard.py",
        "--config",
        "conf/base.yaml",
        "--config",
        "conf/data/ref-davis17.yaml",
        "--split",
        "valid",
    ]
    overrides = [f"data.root={root}", f"data.shards={out}"]
    return subprocess.run([*command, *flags, *overrides], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(partial(empty_jpeg, video="libby", index=0), id="zero-byte-first-jpeg"),
        pytest.param(partial(blank_sentence, video="libby"), id="empty-sentence"),
    ],
)
def test_a_broken_input_stops_the_stage_with_one_line_naming_the_file(
    shared_data: Path, tmp_path: Path, damage: Callable[[Path], Path]
) -> None:
    root = short_davis(shared_data, tmp_path, VIDEOS)
    damaged = damage(root)
    run = shard(root, tmp_path / "shards")
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert (run.returncode, len(errors)) == (2, 1), run.stderr[-3000:]
    assert str(damaged) in errors[0] and "Traceback" not in run.stderr
    assert not (tmp_path / "shards/valid" / MANIFEST).exists()


def test_skip_bad_lists_the_bad_videos_and_shards_the_rest(shared_data: Path, tmp_path: Path) -> None:
    root = short_davis(shared_data, tmp_path, VIDEOS)
    damaged = {"libby": empty_jpeg(root, "libby", index=0), "cows": shrink_png(root, "cows")}
    run = shard(root, tmp_path / "shards", "--skip-bad")
    assert run.returncode == 0, run.stderr[-3000:]
    assert "2 rejected videos" in run.stdout and not any(line.startswith("error:") for line in run.stderr.splitlines())
    rows, metadata = read_manifest(tmp_path / "shards/valid" / MANIFEST)
    assert {entry["video"]: str(damaged[entry["video"]]) in entry["reason"] for entry in metadata["rejected"]} == {
        "libby": True,
        "cows": True,
    }
    assert {key.split("__")[0] for row in rows for key in row["samples"]} == {"blackswan"}
