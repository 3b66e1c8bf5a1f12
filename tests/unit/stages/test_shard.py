"""The shard stage's closing report: each video ``--skip-bad`` left out, on its own line, and where the list is kept."""

from __future__ import annotations

from pathlib import Path

from groprompt.files import location
from groprompt.stages.shard import written_report


def record(shard: str, samples: int, frames: int, rejected: list[dict[str, str]]) -> dict[str, object]:
    return {"shard": shard, "n_samples": samples, "n_frames": frames, "rejected": rejected}


def test_each_skipped_video_has_a_line_with_its_reason_and_the_manifest_is_named_as_the_list(tmp_path: Path) -> None:
    manifest = location(tmp_path / "manifest.parquet")
    records = [
        record("shard-000000.tar", 2, 8, [{"video": "cows", "reason": "a/cows/00002.png: annotation missing"}]),
        record("shard-000001.tar", 1, 3, [{"video": "libby", "reason": "a/libby/00000.jpg: unreadable image: empty file"}]),
    ]
    assert written_report(manifest, records).splitlines() == [
        "skipped video cows: a/cows/00002.png: annotation missing",
        "skipped video libby: a/libby/00000.jpg: unreadable image: empty file",
        f"wrote {tmp_path}/manifest.parquet: 3 samples, 11 frames, 2 rejected videos "
        "(listed with their reasons under 'rejected' in its metadata)",
    ]


def test_a_run_that_left_nothing_out_prints_the_counts_alone(tmp_path: Path) -> None:
    manifest = location(tmp_path / "manifest.parquet")
    assert written_report(manifest, [record("shard-000000.tar", 4, 16, [])]) == (
        f"wrote {tmp_path}/manifest.parquet: 4 samples, 16 frames, 0 rejected videos"
    )
