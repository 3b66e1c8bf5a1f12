"""The stages' entry points, run as a user runs them, on broken copies of real data (``tests.bad_inputs``).

Refused: exit code 2, one ``error:`` line naming the file, no traceback, nothing written where the output goes.
With ``--skip-bad`` the shard stage exits 0, lists the bad videos in its manifest and shards the good one. A frame
shard cut short is refused by the embed and evaluate stages (edited shards, and training: the unit tests).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from groprompt.data.manifest import MANIFEST, read_manifest
from pipelines import embed, evaluate, shard
from tests.bad_inputs import blank_sentence, cut_shard, empty_jpeg, short_davis, shrink_png
from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.slow

VIDEOS = ("blackswan", "cows", "libby")
DAVIS = ["--config", str(REPO_ROOT / "conf/base.yaml"), "--config", str(REPO_ROOT / "conf/data/ref-davis17.yaml")]


def run(main: Callable[[list[str]], int], argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], str]:
    """Exit code, the ``error:`` lines and the whole stderr of an entry point's ``main``."""
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.startswith("error:")], err


def shard_argv(root: Path, out: Path, *flags: str) -> list[str]:
    return [*DAVIS, "--split", "valid", *flags, f"data.root={root}", f"data.shards={out}", "data.max_side=128", "data.window=4"]


@pytest.fixture(scope="module")
def embedded(local_ray: None, shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two short DAVIS videos sharded (with masks) and embedded (tiny SAM) through the entry points."""
    work = tmp_path_factory.mktemp("bad-stage-inputs")
    root = short_davis(shared_data, work, ("blackswan", "libby"))
    assert shard.main(shard_argv(root, work / "shards")) == 0
    overrides = [f"data.shards={work / 'shards'}", f"data.embeddings={work / 'embeddings'}", "model.sam=tiny"]
    assert embed.main([*DAVIS, "--split", "valid", *overrides]) == 0
    return work


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(partial(empty_jpeg, video="libby", index=0), id="zero-byte-first-jpeg"),
        pytest.param(partial(blank_sentence, video="libby"), id="empty-sentence"),
    ],
)
def test_a_broken_source_stops_the_shard_stage_with_one_line_naming_the_file(
    local_ray: None, shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: Callable[[Path], Path]
) -> None:
    root = short_davis(shared_data, tmp_path, VIDEOS)
    damaged = damage(root)
    code, errors, err = run(shard.main, shard_argv(root, tmp_path / "shards"), capsys)
    assert (code, len(errors)) == (2, 1), err[-3000:]
    assert str(damaged) in errors[0] and "Traceback" not in err
    assert not (tmp_path / "shards/valid" / MANIFEST).exists()


def test_skip_bad_lists_the_bad_videos_and_shards_the_rest(
    local_ray: None, shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = short_davis(shared_data, tmp_path, VIDEOS)
    damaged = {"libby": empty_jpeg(root, "libby", index=0), "cows": shrink_png(root, "cows")}
    capsys.readouterr()
    assert shard.main(shard_argv(root, tmp_path / "shards", "--skip-bad")) == 0
    captured = capsys.readouterr()
    assert not any(line.startswith("error:") for line in captured.err.splitlines())
    skipped = {line.split()[2].rstrip(":"): line for line in captured.out.splitlines() if line.startswith("skipped video ")}
    assert {video: str(damaged[video]) in line for video, line in skipped.items()} == {"libby": True, "cows": True}
    assert "2 rejected videos (listed with their reasons under 'rejected' in its metadata)" in captured.out
    rows, metadata = read_manifest(tmp_path / "shards/valid" / MANIFEST)
    assert {entry["video"]: str(damaged[entry["video"]]) in entry["reason"] for entry in metadata["rejected"]} == {
        "libby": True,
        "cows": True,
    }
    assert {key.split("__")[0] for row in rows for key in row["samples"]} == {"blackswan"}


@pytest.mark.parametrize("damage", [partial(cut_shard, samples=1)], ids=["frames-cut-at-a-member"])  # edited: unit tests
@pytest.mark.parametrize("stage", ["embed", "evaluate"])
def test_a_frame_shard_that_differs_from_its_manifest_is_refused_by_the_stages_reading_it(
    embedded: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: Callable[[Path], Path], stage: str
) -> None:
    work = Path(shutil.copytree(embedded, tmp_path / "work"))
    damaged = damage(work / "shards/valid/shard-000000.tar")
    data = [f"data.shards={work / 'shards'}", f"data.embeddings={work / 'embeddings-new'}", "model.sam=tiny"]
    if stage == "embed":
        code, errors, err = run(embed.main, [*DAVIS, "--split", "valid", *data], capsys)
        written = work / "embeddings-new/valid" / MANIFEST
    else:
        argv = [*DAVIS, "--boxes", "oracle", "--segmentor", "box", "--out", str(work / "eval"), "--no-mlflow", *data]
        code, errors, err = run(evaluate.main, argv, capsys)
        written = work / "eval/summary.json"
    assert (code, len(errors)) == (2, 1), err[-3000:]
    assert str(damaged) in errors[0] and re.search(r"differs from (its manifest row|the sha256 in its manifest)", errors[0])
    assert "Traceback" not in err
    assert not written.exists()
