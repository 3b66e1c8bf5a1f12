"""Stage manifests: a parquet table of output files plus the settings that made them, written atomically."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from groprompt.errors import DataError
from groprompt.files import Location, atomic_path, location

METADATA_KEY = b"groprompt"
MANIFEST = "manifest.parquet"  # the file name of every stage's manifest


def write_manifest(path: str | Location, rows: list[dict[str, Any]], metadata: dict[str, Any]) -> None:
    """Write ``rows`` as parquet with ``metadata`` (JSON) in the schema, atomically (a local file or an object)."""
    table = pa.Table.from_pylist(rows)
    table = table.replace_schema_metadata({METADATA_KEY: json.dumps(metadata, sort_keys=True).encode()})
    with atomic_path(path) as temporary:
        pq.write_table(table, temporary)


def read_manifest(path: str | Location) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The rows and metadata of a manifest (a local file or an object); a clear error when it is missing or not one of ours."""
    path = location(path)
    if not path.is_file():
        raise DataError(f"{path}: manifest not found (run the stage that writes it first)")
    try:
        table = pq.read_table(pa.BufferReader(path.read_bytes()))
    except (pa.ArrowInvalid, OSError) as error:
        raise DataError(f"{path}: not a readable parquet manifest: {error}") from error
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise DataError(f"{path}: parquet file without groprompt metadata")
    return table.to_pylist(), json.loads(raw)
