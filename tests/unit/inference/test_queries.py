"""groprompt.inference.queries: query files, grouping per video, and the errors table."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from groprompt.errors import DataError
from groprompt.inference.queries import ERROR_SCHEMA, InputError, Query, group_queries, read_queries, write_errors
from groprompt.inference.sources import video_source


def test_csv_queries_with_empty_query_error(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text('video,query\na,the red square\na,"a dog, running"\nb,  \nb,the cat\n,orphan\n')
    queries, errors = read_queries(path)
    assert queries == [Query("a", "the red square", "0"), Query("a", "a dog, running", "1"), Query("b", "the cat", "0")]
    assert [(e.video, e.query) for e in errors] == [("b", ""), ("", "orphan")]
    assert "empty query" in errors[0].reason and "line 4" in errors[0].reason


def test_jsonl_queries_and_malformed_lines(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    lines = [{"video": "a", "query": "left one"}, {"video": "a", "query": ""}, {"video": "b", "query": "x", "exp_id": "7"}]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n{broken\n\n[1]\n")
    queries, errors = read_queries(path)
    assert queries == [Query("a", "left one", "0"), Query("b", "x", "7")]
    assert sorted(e.reason.split(": ", 1)[1][:12] for e in errors) == ["empty query", "expected an ", "not JSON (Ex"]


def test_queries_file_without_columns_or_missing(tmp_path: Path) -> None:
    (tmp_path / "q.csv").write_text("clip,sentence\na,b\n")
    with pytest.raises(DataError, match="video,query"):
        read_queries(tmp_path / "q.csv")
    with pytest.raises(DataError, match="not found"):
        read_queries(tmp_path / "nope.csv")


@pytest.mark.parametrize("name", ["queries.csv", "queries.jsonl"])
def test_a_queries_file_that_is_not_utf8_is_refused_naming_it(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    rows = "video,query\nclip,the caf\xe9 sign\n" if name.endswith(".csv") else '{"video": "clip", "query": "the caf\xe9 sign"}\n'
    path.write_bytes(rows.encode("latin-1"))
    with pytest.raises(DataError) as caught:
        read_queries(path)
    assert str(caught.value).startswith(f"{path}: not UTF-8 text (byte ") and "\n" not in str(caught.value)


def test_group_queries_reports_missing_videos(tmp_path: Path) -> None:
    videos = [video_source(tmp_path / "a.mp4"), video_source(tmp_path / "b.mp4"), video_source(tmp_path / "c.mp4")]
    queries = [Query("b", "one", "0"), Query("zz", "lost", "0"), Query("a", "two", "0"), Query("b", "three", "1")]
    grouped, errors = group_queries(queries, videos)
    assert [(v.name, [q.query for q in qs]) for v, qs in grouped] == [("a", ["two"]), ("b", ["one", "three"])]
    assert errors == [InputError("zz", "lost", "video not found among the inputs")]


def test_a_query_names_its_video_by_stem_file_name_or_path_and_an_ambiguous_name_is_refused(tmp_path: Path) -> None:
    (tmp_path / "folders" / "x.mp4").mkdir(parents=True)  # a frame folder whose name is another video's file name
    videos = [
        video_source(tmp_path / "camel.mp4"),
        video_source(tmp_path / "other" / "x.mp4"),
        video_source(tmp_path / "folders" / "x.mp4"),
    ]
    camel = str((tmp_path / "camel.mp4").resolve())
    queries = [Query("camel.mp4", "by file name", "0"), Query(camel, "by path", "1"), Query("camel", "by stem", "2")]
    queries += [Query("x.mp4", "which one?", "0"), Query("camel.avi", "not this one", "0")]
    grouped, errors = group_queries(queries, videos)
    assert [(v.name, [q.query for q in qs]) for v, qs in grouped] == [("camel", ["by file name", "by path", "by stem"])]
    container, folder = (str((tmp_path / name / "x.mp4").resolve()) for name in ("other", "folders"))
    assert errors == [
        InputError("x.mp4", "which one?", f"names several videos: {container} and {folder}"),
        InputError("camel.avi", "not this one", "video not found among the inputs"),
    ]


def test_errors_table_round_trips_and_keeps_its_schema_when_empty(tmp_path: Path) -> None:
    errors = [InputError("a", "one", "empty query"), InputError("", "x", "no video named")]
    write_errors(tmp_path / "out" / "errors.parquet", errors)
    assert pq.read_table(tmp_path / "out" / "errors.parquet").to_pylist() == [
        {"video": "a", "query": "one", "reason": "empty query"},
        {"video": "", "query": "x", "reason": "no video named"},
    ]
    write_errors(tmp_path / "out" / "errors.parquet", [])
    empty = pq.read_table(tmp_path / "out" / "errors.parquet")
    assert empty.num_rows == 0 and empty.schema.equals(ERROR_SCHEMA)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["errors.parquet"]  # no temporary file left
