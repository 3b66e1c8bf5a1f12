"""The format registry, ``read_videos`` / ``dataset_summary``, and ``groprompt inspect`` on the shared data."""

from __future__ import annotations

import json

import pytest

from groprompt.cli import main
from groprompt.data.formats import FORMATS, dataset_summary, get_format, read_videos
from groprompt.data.records import Video
from groprompt.errors import DataError


def test_registry_names():
    assert set(FORMATS) == {"ref-youtube-vos", "ref-davis17", "refshapes", "a2d-sentences", "jhmdb-sentences", "mevis"}
    assert get_format("ref-davis17").name == "ref-davis17"
    with pytest.raises(DataError, match="unknown dataset format 'davis'; known: ref-youtube-vos"):
        read_videos("davis", ".")


def test_read_videos_is_lazy_but_checks_the_annotation_now(shared_data, tmp_path):
    videos = read_videos("ref-davis17", shared_data / "ref-davis-mini", with_boxes=False)
    first = next(iter(videos))
    assert isinstance(first, Video) and first.video_id == "blackswan" and first.boxes == {}
    with pytest.raises(DataError, match="meta_expressions.json: missing"):
        read_videos("ref-davis17", tmp_path)  # raised before iteration


def test_cli_inspect_json(shared_data, capsys):
    assert main(["inspect", "ref-davis17", str(shared_data / "ref-davis-mini"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"videos": 8, "expressions": 32, "frames": 537}


@pytest.mark.parametrize(
    "fmt,name,expected",
    [
        ("ref-davis17", "ref-davis17_valid_meta_expressions.json", {"videos": 30, "expressions": 244, "frames": 0}),
        ("ref-youtube-vos", "ref-youtube-vos_valid_meta_expressions.json", {"videos": 507, "expressions": 2096, "frames": 0}),
        ("a2d-sentences", "a2d_annotation.txt", {"videos": 3754, "expressions": 6655, "frames": 0}),
        ("jhmdb-sentences", "jhmdb_sentences_samples_metadata.json", {"videos": 928, "expressions": 928, "frames": 0, "samples": 2784}),
    ],
)
def test_cli_inspect_annotation_files(shared_data, capsys, fmt, name, expected):
    assert main(["inspect", fmt, str(shared_data / "annotations" / name), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == expected
    assert dataset_summary(fmt, shared_data / "annotations" / name) == expected


def test_cli_inspect_text_and_errors(shared_data, capsys, tmp_path):
    assert main(["inspect", "ref-davis17", str(shared_data / "ref-davis-mini"), "--split", "valid"]) == 0
    assert capsys.readouterr().out.splitlines() == ["videos: 8", "expressions: 32", "frames: 537"]
    assert main(["inspect", "ref-davis17", str(tmp_path / "nowhere")]) == 2
    assert f"{tmp_path / 'nowhere'}: no such dataset folder" in capsys.readouterr().err
    assert main(["inspect", "ref-davis17", str(shared_data / "ref-davis-mini"), "--split", "train"]) == 2
    assert "meta_expressions/train/meta_expressions.json: missing" in capsys.readouterr().err


def test_test_splits_and_evaluation_only_formats():
    assert {name: spec.test_splits for name, spec in FORMATS.items()} == {
        "ref-youtube-vos": {"valid", "test"},
        "ref-davis17": {"valid"},
        "refshapes": set(),
        "a2d-sentences": {"test", "all"},
        "jhmdb-sentences": {"test"},
        "mevis": {"valid_u", "valid"},
    }
    assert {name: spec.evaluates_model_of for name, spec in FORMATS.items() if spec.evaluates_model_of} == {
        "ref-davis17": "ref-youtube-vos",
        "jhmdb-sentences": "a2d-sentences",
    }


@pytest.mark.parametrize(
    "fmt,name,split",
    [
        ("ref-davis17", "ref-davis17_valid_meta_expressions.json", "valid-holdout"),
        ("jhmdb-sentences", "jhmdb_sentences_samples_metadata.json", "test-fit"),
    ],
)
def test_evaluation_sets_have_no_held_out_parts(shared_data, fmt, name, split):
    with pytest.raises(DataError, match=f"split '{split}': .* is a test split of {fmt}"):
        dataset_summary(fmt, shared_data / "annotations" / name, split)
