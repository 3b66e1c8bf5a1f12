"""Stage manifests: a parquet table of output files plus the settings that made them, written atomically."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from groprompt.data.records import DataError

METADATA_KEY = b"groprompt"
MANIFEST = "manifest.parquet"  # the file name of every stage's manifest


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(value: Any) -> str:
    """A stable hash of JSON-serialisable content."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def temporary_path(path: Path) -> Path:
    """A hidden sibling of ``path`` for writing before an atomic rename; unique per process."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_json_atomic(path: Path, content: Any) -> None:
    """Write JSON to a temporary name, then rename it into place."""
    temporary = temporary_path(path)
    temporary.write_text(json.dumps(content, sort_keys=True, indent=1))
    os.replace(temporary, path)


def write_manifest(path: str | Path, rows: list[dict[str, Any]], metadata: dict[str, Any]) -> None:
    """Write ``rows`` as parquet with ``metadata`` (JSON) in the schema, atomically."""
    path = Path(path)
    table = pa.Table.from_pylist(rows)
    table = table.replace_schema_metadata({METADATA_KEY: json.dumps(metadata, sort_keys=True).encode()})
    temporary = temporary_path(path)
    pq.write_table(table, temporary)
    os.replace(temporary, path)


def read_manifest(path: str | Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The rows and metadata of a manifest; a clear error when it is missing or not one of ours."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: manifest not found (run the stage that writes it first)")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as error:
        raise DataError(f"{path}: not a readable parquet manifest: {error}") from error
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise DataError(f"{path}: parquet file without groprompt metadata")
    return table.to_pylist(), json.loads(raw)
