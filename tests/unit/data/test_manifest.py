"""Stage manifests: parquet rows plus JSON settings in the schema, read back as written; anything else is a DataError naming the file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from groprompt.data.manifest import read_manifest, write_manifest
from groprompt.errors import DataError

ROWS = [
    {"shard": "shard-000000.tar", "samples": ["v0__00000", "v1__00000"], "n_samples": 2, "n_frames": 8, "bytes": 1234, "sha256": "ab" * 32},
    {"shard": "shard-000001.tar", "samples": ["v2__00000"], "n_samples": 1, "n_frames": 4, "bytes": 99, "sha256": "cd" * 32},
]
METADATA = {"stage": "shard", "split": "train", "settings": {"window": 4, "with_masks": False}, "rejected": [], "version": "0.1"}


def test_rows_and_metadata_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "out" / "manifest.parquet"  # the folder is created
    write_manifest(path, ROWS, METADATA)
    rows, metadata = read_manifest(path)
    assert rows == ROWS
    assert metadata == METADATA
    assert os.listdir(path.parent) == ["manifest.parquet"]  # no temporary left behind


def test_the_written_file_is_plain_parquet_with_json_metadata(tmp_path: Path) -> None:
    """Other tools (pyarrow alone) read the rows; the settings sit in the schema under ``groprompt``."""
    path = tmp_path / "manifest.parquet"
    write_manifest(path, ROWS, METADATA)
    table = pq.read_table(path)
    assert table.column("shard").to_pylist() == ["shard-000000.tar", "shard-000001.tar"]
    assert table.column("n_frames").to_pylist() == [8, 4]
    assert json.loads(table.schema.metadata[b"groprompt"]) == METADATA


def test_rewriting_replaces_the_previous_manifest(tmp_path: Path) -> None:
    path = tmp_path / "manifest.parquet"
    write_manifest(path, ROWS, METADATA)
    write_manifest(path, ROWS[:1], {"stage": "embed"})
    rows, metadata = read_manifest(path)
    assert rows == ROWS[:1] and metadata == {"stage": "embed"}


def test_a_missing_manifest_is_a_data_error_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "manifest.parquet"
    with pytest.raises(DataError, match="manifest not found") as caught:
        read_manifest(path)
    assert str(path) in str(caught.value)


def test_a_folder_is_not_a_manifest(tmp_path: Path) -> None:
    path = tmp_path / "manifest.parquet"
    path.mkdir()
    with pytest.raises(DataError) as caught:
        read_manifest(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("content", [b"shard,samples\nshard-000000.tar,2\n", b"", b"PAR1 but not really PAR1"])
def test_a_file_that_is_not_parquet_is_a_data_error_naming_the_path(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "manifest.parquet"
    path.write_bytes(content)
    with pytest.raises(DataError, match="not a readable parquet manifest") as caught:
        read_manifest(path)
    assert str(path) in str(caught.value)


def test_parquet_without_groprompt_metadata_is_a_data_error_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "manifest.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), path)
    with pytest.raises(DataError, match="without groprompt metadata") as caught:
        read_manifest(path)
    assert str(path) in str(caught.value)


def test_parquet_with_only_other_metadata_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "manifest.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS).replace_schema_metadata({b"someone-else": b"{}"}), path)
    with pytest.raises(DataError, match="without groprompt metadata"):
        read_manifest(path)
