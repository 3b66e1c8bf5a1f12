"""Atomic writes leave either the old file or the new one, never a half-written file or a stray temporary; hashes are sha256."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from groprompt.errors import DataError
from groprompt.files import ObjectPath, atomic_path, file_size, fingerprint, location, sha256_file, write_json_atomic, write_text_atomic


class Boom(Exception):
    """Raised inside an ``atomic_path`` block by the tests."""


def test_atomic_path_renames_into_place_on_success(tmp_path: Path) -> None:
    target = tmp_path / "new" / "folder" / "out.txt"  # the parent folders do not exist yet
    with atomic_path(target) as temporary:
        assert temporary.parent == target.parent and temporary != target
        temporary.write_text("complete")
        assert not target.exists()  # nothing at the final name until the block succeeds
    assert target.read_text() == "complete"
    assert os.listdir(target.parent) == ["out.txt"]  # the temporary was renamed, not copied


def test_atomic_path_replaces_an_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("old")
    with atomic_path(target) as temporary:
        temporary.write_text("new")
        assert target.read_text() == "old"  # a reader sees the old content while the new one is written
    assert target.read_text() == "new"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_atomic_path_keeps_the_previous_content_and_no_temporary_when_the_block_raises(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    target.write_text("previous")
    with pytest.raises(Boom), atomic_path(target) as temporary:
        temporary.write_text("half of the new con")
        raise Boom
    assert target.read_text() == "previous"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_atomic_path_creates_nothing_when_the_block_raises_and_there_was_no_file(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    with pytest.raises(Boom), atomic_path(target) as temporary:
        temporary.write_text("partial")
        raise Boom
    assert os.listdir(tmp_path) == []


def test_write_json_atomic_round_trips_with_sorted_keys_and_strings_for_other_values(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "record.json"
    content = {"zeta": [1, 2.5, None], "alpha": {"nested": True, "text": "é"}}
    write_json_atomic(target, content)
    assert json.loads(target.read_text()) == content
    text = target.read_text()
    assert text.index('"alpha"') < text.index('"zeta"')  # sorted keys
    write_json_atomic(target, {"path": Path("/a/b")})  # not JSON: written as its str()
    assert json.loads(target.read_text()) == {"path": "/a/b"}
    assert os.listdir(target.parent) == ["record.json"]


def test_write_text_atomic_writes_utf8(tmp_path: Path) -> None:
    target = tmp_path / "note.txt"
    write_text_atomic(target, "naïve ☃\nline two")
    assert target.read_bytes() == "naïve ☃\nline two".encode()
    write_text_atomic(target, "replaced")
    assert target.read_text(encoding="utf-8") == "replaced"
    assert os.listdir(tmp_path) == ["note.txt"]


@pytest.mark.parametrize("chunk", [1, 7, 4096, 1 << 20])
def test_sha256_file_equals_hashlib_on_the_whole_content(tmp_path: Path, chunk: int) -> None:
    data = bytes(range(256)) * 40 + b"tail"  # 10244 bytes: many chunks of 7, a partial last chunk
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert sha256_file(path, chunk=chunk) == hashlib.sha256(data).hexdigest()


def test_sha256_file_of_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.write_bytes(b"")
    assert sha256_file(path) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"  # sha256 of nothing


def test_fingerprint_is_the_sha256_of_canonical_json() -> None:
    # json.dumps(..., sort_keys=True) with the default separators, written out by hand
    expected = hashlib.sha256(b'{"a": 1, "b": [1, 2]}').hexdigest()
    assert fingerprint({"b": [1, 2], "a": 1}) == expected


def test_fingerprint_ignores_key_order_at_every_depth() -> None:
    first = {"settings": {"window": 4, "max_side": 128}, "videos": ["v1", "v2"]}
    second = {"videos": ["v1", "v2"], "settings": {"max_side": 128, "window": 4}}
    assert list(first) != list(second)
    assert fingerprint(first) == fingerprint(second)


@pytest.mark.parametrize(
    "other",
    [
        {"settings": {"window": 5, "max_side": 128}, "videos": ["v1", "v2"]},  # another value
        {"settings": {"window": 4, "max_side": 128}, "videos": ["v2", "v1"]},  # list order matters
        {"settings": {"window": 4, "max_side": 128}, "videos": ["v1", "v2"], "extra": 0},  # another key
        {"settings": {"window": "4", "max_side": 128}, "videos": ["v1", "v2"]},  # another type
    ],
)
def test_fingerprint_differs_for_different_content(other: dict) -> None:
    assert fingerprint(other) != fingerprint({"settings": {"window": 4, "max_side": 128}, "videos": ["v1", "v2"]})


def test_object_paths_join_name_and_parent_like_local_paths() -> None:
    path = location("s3://bucket/a//b/") / "c.tar"
    assert isinstance(path, ObjectPath)
    assert (str(path), path.name, str(path.parent), path.native) == (
        "s3://bucket/a/b/c.tar",
        "c.tar",
        "s3://bucket/a/b",
        "bucket/a/b/c.tar",
    )
    assert location("file:///tmp/x") == Path("/tmp/x") and location("work/x") == Path("work/x")


@pytest.mark.slow
def test_atomic_path_on_object_storage_leaves_nothing_when_the_block_raises_and_the_whole_file_when_it_succeeds(bucket: str) -> None:
    target = location(bucket) / "shards" / "out.bin"
    with pytest.raises(Boom), atomic_path(target) as temporary:
        temporary.write_bytes(b"half")
        raise Boom
    assert not target.exists()
    assert list((location(bucket) / "shards").glob("*")) == []  # no hidden upload left behind either
    payload = os.urandom(3 << 20)
    with atomic_path(target) as temporary:
        temporary.write_bytes(payload)
        assert not target.exists()  # nothing at the key until the block succeeds
    assert target.is_file() and file_size(target) == len(payload) and target.read_bytes() == payload
    assert sha256_file(target) == hashlib.sha256(payload).hexdigest()
    assert [p.name for p in (location(bucket) / "shards").glob("*")] == ["out.bin"]


@pytest.mark.slow
def test_a_missing_bucket_is_one_data_error_naming_the_uri(s3_endpoint: str) -> None:
    target = location("s3://no-such-bucket-here") / "x.json"
    with pytest.raises(DataError, match=r"s3://no-such-bucket-here/x.json: upload failed"):
        write_json_atomic(target, {"a": 1})
