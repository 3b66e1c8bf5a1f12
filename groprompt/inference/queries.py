"""Referring queries: reading the CSV or JSONL file, grouping them by video, and the table of input errors."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from groprompt.errors import DataError
from groprompt.files import Location, atomic_path, location
from groprompt.inference.sources import VideoSource

JSON_SUFFIXES = (".jsonl", ".ndjson", ".json")
ERROR_SCHEMA = pa.schema([("video", pa.string()), ("query", pa.string()), ("reason", pa.string())])

Record = tuple[int, dict[str, Any]]  # (line number in the file, the row's fields)


@dataclass(frozen=True)
class Query:
    """One referring sentence for a video; ``exp_id`` names its outputs (its order among the video's queries)."""

    video: str
    query: str
    exp_id: str = ""


@dataclass(frozen=True)
class InputError:
    """A row of the errors table."""

    video: str
    query: str
    reason: str


def read_queries(path: str | Path | Location) -> tuple[list[Query], list[InputError]]:
    """Queries from a CSV file (header ``video,query``) or JSONL (``{"video": ..., "query": ...}`` a line).

    Rows with an empty query (or no video) go to the errors; a file without the columns is a ``DataError``.
    ``exp_id`` is the query's order among its video's queries (``0``, ``1``...), unless the file gives one. The
    file may be local or in object storage.
    """
    path = location(path)
    if not path.is_file():
        raise DataError(f"{path}: queries file not found")
    try:
        records, errors = _jsonl_records(path) if path.suffix.lower() in JSON_SUFFIXES else (_csv_records(path), [])
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text (byte {error.start}: {error.reason})") from error
    queries: list[Query] = []
    counts: dict[str, int] = {}
    for number, record in records:
        video = str(record.get("video") or "").strip()
        text = "" if record.get("query") is None else str(record["query"]).strip()
        if not video:
            errors.append(InputError("", text, f"{path.name} line {number}: no video named"))
        elif not text:
            errors.append(InputError(video, "", f"{path.name} line {number}: empty query"))
        else:
            queries.append(Query(video, text, str(record.get("exp_id") or counts.get(video, 0))))
            counts[video] = counts.get(video, 0) + 1
    return queries, errors


def _jsonl_records(path: Location) -> tuple[list[Record], list[InputError]]:
    """The objects of a JSONL file, and an error for each line that is not a JSON object."""
    records: list[Record] = []
    errors: list[InputError] = []
    for number, line in enumerate(path.read_bytes().decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            errors.append(InputError("", line.strip()[:200], f"{path.name} line {number}: not JSON ({error.msg})"))
            continue
        if isinstance(record, dict):
            records.append((number, record))
        else:
            errors.append(InputError("", line.strip()[:200], f"{path.name} line {number}: expected an object"))
    return records, errors


def _csv_records(path: Location) -> list[Record]:
    """The rows of a CSV file with ``video`` and ``query`` columns (header names stripped of spaces)."""
    with io.StringIO(path.read_bytes().decode("utf-8"), newline="") as handle:
        reader = csv.DictReader(handle)
        fields = [f.strip() for f in reader.fieldnames or []]
        if "video" not in fields or "query" not in fields:
            raise DataError(f"{path}: expected a CSV header with columns video,query; found {fields}")
        return [(number, {(k or "").strip(): v for k, v in row.items()}) for number, row in enumerate(reader, start=2)]


def group_queries(
    queries: Iterable[Query], videos: Sequence[VideoSource]
) -> tuple[list[tuple[VideoSource, list[Query]]], list[InputError]]:
    """Each video (in ``videos`` order) with its queries; a query names its video by stem (``camel``), file name
    (``camel.mp4``) or path; one naming no known video, or several, becomes an error. Videos without queries are left
    out."""
    candidates: dict[str, list[VideoSource]] = {}
    for video in videos:
        file_name = Path(video.member or video.path).name
        for key in dict.fromkeys((video.name, file_name, video.path)):
            candidates.setdefault(key, []).append(video)
    grouped: dict[str, list[Query]] = {}
    errors: list[InputError] = []
    for q in queries:
        found = candidates.get(q.video, [])
        if not found:
            errors.append(InputError(q.video, q.query, "video not found among the inputs"))
        elif len(found) > 1:
            errors.append(InputError(q.video, q.query, f"names several videos: {found[0].path} and {found[1].path}"))
        else:
            grouped.setdefault(found[0].name, []).append(q)
    return [(v, grouped[v.name]) for v in videos if v.name in grouped], errors


def write_errors(path: str | Path | Location, errors: Iterable[InputError]) -> None:
    """The errors table (video, query, reason) as parquet, atomically; no errors give an empty table."""
    table = pa.Table.from_pylist([asdict(e) for e in errors], schema=ERROR_SCHEMA)
    with atomic_path(path) as temporary:
        pq.write_table(table, temporary)
