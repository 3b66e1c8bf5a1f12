"""Where files live (a local path, or a URI of object storage: ``s3://bucket/prefix``, ``gs://...``), writing them so
that a reader never sees half of one, and hashing what was written.

``location`` turns a configured path or URI into a ``pathlib.Path`` or an ``ObjectPath``; both answer the same small
API (``/``, ``name``, ``parent``, ``exists``, ``is_file``, ``mkdir``, ``glob``, ``read_bytes``, ``read_text``), and
``open_input``, ``file_size``, ``atomic_path`` and ``sha256_file`` take either. Object storage goes through pyarrow's
file systems, which read credentials and the endpoint from the environment and the usual files (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``, profiles); nothing here writes them anywhere.
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import hashlib
import io
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow.fs as pafs

from groprompt.errors import DataError

COPY_CHUNK = 8 << 20  # bytes per read when uploading or hashing


@functools.lru_cache(maxsize=16)
def _filesystem(root: str, endpoint: str | None) -> pafs.FileSystem:
    """One pyarrow file system per bucket root (``s3://bucket``) and endpoint, made once per process."""
    return pafs.FileSystem.from_uri(root)[0]


@dataclass(frozen=True)
class ObjectPath:
    """A file or prefix in object storage, ``<scheme>://<bucket>/<key>``; the subset of ``pathlib.Path`` the pipeline
    uses. Object stores have no folders: ``mkdir`` does nothing, and a prefix exists when something lies under it."""

    scheme: str
    bucket: str
    key: str = ""

    @classmethod
    def parse(cls, uri: str) -> ObjectPath:
        scheme, _, rest = uri.partition("://")
        bucket, _, key = rest.partition("/")
        if not bucket:
            raise DataError(f"{uri}: no bucket in the URI")
        return cls(scheme, bucket, "/".join(part for part in key.split("/") if part))

    def __str__(self) -> str:
        return f"{self.scheme}://{self.bucket}/{self.key}" if self.key else f"{self.scheme}://{self.bucket}"

    def __truediv__(self, name: str | os.PathLike[str]) -> ObjectPath:
        return ObjectPath(self.scheme, self.bucket, "/".join(part for part in (self.key, *str(name).split("/")) if part))

    @property
    def name(self) -> str:
        return self.key.rpartition("/")[2]

    @property
    def suffix(self) -> str:
        return Path(self.name).suffix

    @property
    def stem(self) -> str:
        return Path(self.name).stem

    @property
    def parent(self) -> ObjectPath:
        return ObjectPath(self.scheme, self.bucket, self.key.rpartition("/")[0])

    @property
    def filesystem(self) -> pafs.FileSystem:
        return _filesystem(f"{self.scheme}://{self.bucket}", os.environ.get("AWS_ENDPOINT_URL"))

    @property
    def native(self) -> str:
        """The path as the pyarrow file system names it: ``bucket/key``."""
        return f"{self.bucket}/{self.key}" if self.key else self.bucket

    def info(self) -> pafs.FileInfo:
        """What the store says of this key; an unreachable store, a missing bucket or a refusal is a ``DataError``."""
        try:
            return self.filesystem.get_file_info(self.native)
        except OSError as error:
            raise DataError(f"{self}: {error}") from error

    def exists(self) -> bool:
        return self.info().type != pafs.FileType.NotFound

    def is_file(self) -> bool:
        return self.info().type == pafs.FileType.File

    def is_dir(self) -> bool:
        """Whether keys lie under this prefix."""
        return self.info().type == pafs.FileType.Directory

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """Nothing to make: keys need no folders."""

    def listing(self) -> list[pafs.FileInfo]:
        """What the store holds directly under this prefix (files and prefixes), in one listing."""
        try:
            return self.filesystem.get_file_info(pafs.FileSelector(self.native, allow_not_found=True))
        except OSError as error:
            raise DataError(f"{self}: {error}") from error

    def glob(self, pattern: str) -> Iterator[ObjectPath]:
        """The files and prefixes directly under this prefix whose names match ``pattern`` (``fnmatch``)."""
        for info in self.listing():
            if fnmatch.fnmatch(info.base_name, pattern):
                yield self / info.base_name

    def read_bytes(self) -> bytes:
        with open_input(self) as stream:
            return stream.read()

    def read_text(self) -> str:
        return self.read_bytes().decode("utf-8")

    def unlink(self, missing_ok: bool = False) -> None:
        try:
            self.filesystem.delete_file(self.native)
        except FileNotFoundError:
            if not missing_ok:
                raise


Location = Path | ObjectPath
"""A local path or an object in object storage."""


def location(value: str | os.PathLike[str] | ObjectPath) -> Location:
    """A configured path or URI as a ``Path`` (a local path, ``file://`` stripped) or an ``ObjectPath`` (``scheme://``)."""
    if isinstance(value, ObjectPath | Path):
        return value
    text = os.fspath(value)
    if "://" in text and not text.startswith("file://"):
        return ObjectPath.parse(text)
    return Path(text.removeprefix("file://"))


def absolute_location(value: str | os.PathLike[str] | ObjectPath, base: Path | None = None) -> Location:
    """``location(value)``, a relative local path resolved against ``base`` (default: the working folder), as workers
    that run elsewhere need it; a URI as it is."""
    found = location(value)
    return (base or Path.cwd()).joinpath(found).resolve() if isinstance(found, Path) else found


def open_input(path: Location) -> BinaryIO:
    """A binary stream reading the file from its start (sequential reads; object storage streams, nothing is copied)."""
    if isinstance(path, Path):
        return open(path, "rb")
    try:
        return path.filesystem.open_input_stream(path.native)  # type: ignore[return-value]
    except FileNotFoundError:
        raise  # as for a local file: the caller names what is missing
    except OSError as error:
        raise DataError(f"{path}: {error}") from error


def readable(path: Location) -> Path | io.BytesIO:
    """What a reader that seeks and takes a path or a file (Pillow, ``torch.load``) opens: a local file's path, or an
    object's bytes read whole into memory."""
    return path if isinstance(path, Path) else io.BytesIO(path.read_bytes())


def open_random(path: Location) -> BinaryIO:
    """A binary file that can seek (containers such as MP4 and parquet footers need it); on object storage each read
    is a ranged request, nothing is copied."""
    if isinstance(path, Path):
        return open(path, "rb")
    try:
        return path.filesystem.open_input_file(path.native)  # type: ignore[return-value]
    except FileNotFoundError:
        raise
    except OSError as error:
        raise DataError(f"{path}: {error}") from error


def list_folder(path: Location) -> list[tuple[Location, bool]]:
    """What lies directly in a folder (or under a prefix), sorted by name, each with whether it is itself a folder:
    one listing, no request per entry."""
    if isinstance(path, Path):
        return [(entry, entry.is_dir()) for entry in sorted(path.iterdir())]
    return sorted(((path / info.base_name, info.type == pafs.FileType.Directory) for info in path.listing()), key=lambda e: str(e[0]))


@contextmanager
def local_file(path: Location) -> Iterator[Path]:
    """The file as a local path, for tools that take only those: itself, or a temporary copy of an object (removed
    after the block)."""
    if isinstance(path, Path):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="groprompt-download-") as folder:
        copy = Path(folder) / path.name
        with open_input(path) as reader, open(copy, "wb") as writer:
            shutil.copyfileobj(reader, writer, COPY_CHUNK)
        yield copy


def file_size(path: Location) -> int:
    """Bytes in the file."""
    return path.stat().st_size if isinstance(path, Path) else int(path.info().size or 0)


def file_version(path: Location) -> tuple[int, int]:
    """(modification time in ns, size in bytes) of a file, which change when it is rewritten: a cache key for what is
    read from it. ``FileNotFoundError`` when it is missing."""
    if isinstance(path, Path):
        stat = path.stat()
        return stat.st_mtime_ns, stat.st_size
    info = path.info()
    if info.type != pafs.FileType.File:
        raise FileNotFoundError(f"{path}: no such file")
    return info.mtime_ns or 0, int(info.size or 0)


def check_store(path: Location) -> None:
    """Refuse at once, naming ``path``, object storage whose bucket does not exist, refuses this account or cannot
    be reached; a local path passes."""
    if isinstance(path, Path):
        return
    try:
        bucket = path.filesystem.get_file_info(path.bucket)
    except OSError as error:
        raise DataError(f"{path}: {error}") from error
    if bucket.type == pafs.FileType.NotFound:
        raise DataError(f"{path}: bucket {path.bucket!r} does not exist")


def check_writable(path: Location) -> None:
    """Refuse at once, naming ``path``, object storage that cannot take a write there (a missing bucket, no
    permission, an unreachable endpoint), by writing and removing an empty hidden key; a local path passes (its
    folder is made when written)."""
    if isinstance(path, Path):
        return
    probe = path / f".groprompt-write-check-{uuid.uuid4().hex}"
    try:
        with path.filesystem.open_output_stream(probe.native) as stream:
            stream.write(b"")
        path.filesystem.delete_file(probe.native)
    except OSError as error:
        raise DataError(f"{path}: cannot write there: {error}") from error


def output_folder(path: str | os.PathLike[str]) -> Location:
    """A folder outputs go to, before any work: made (a local path, resolved), or checked writable (object storage)."""
    folder = location(path)
    if isinstance(folder, Path):
        folder = folder.resolve()
        folder.mkdir(parents=True, exist_ok=True)
    check_writable(folder)
    return folder


def remove_tree(path: Location) -> None:
    """Delete a folder and everything in it (on object storage: every key under the prefix)."""
    if isinstance(path, Path):
        shutil.rmtree(path)
    else:
        path.filesystem.delete_dir(path.native)


def temporary_path(path: Path) -> Path:
    """A hidden sibling of ``path`` to write before the rename; unique per process."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


@contextmanager
def atomic_path(path: str | os.PathLike[str] | ObjectPath) -> Iterator[Path]:
    """Yield a local temporary file to write for ``path``; put it into place when the block succeeds, remove it when
    the block raises. A local ``path`` gets a hidden sibling renamed into place (the parent folder is created); an
    object gets a local file uploaded to a hidden key and then copied to its own key by the store, so a reader (or a
    re-run after a killed upload) never sees part of it."""
    path = location(path)
    if isinstance(path, ObjectPath):
        with tempfile.TemporaryDirectory(prefix="groprompt-upload-") as folder:
            temporary = Path(folder) / path.name
            yield temporary
            upload(temporary, path)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_path(path)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def upload(source: Path, target: ObjectPath) -> None:
    """Copy the local file ``source`` to ``target`` whole: to a hidden key first, then a copy by the store (an upload
    cut short leaves at most the hidden key, which is removed when this process can)."""
    hidden = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
    filesystem = target.filesystem
    try:
        with open(source, "rb") as reader, filesystem.open_output_stream(hidden.native) as writer:
            shutil.copyfileobj(reader, writer, COPY_CHUNK)
        filesystem.move(hidden.native, target.native)
    except OSError as error:
        raise DataError(f"{target}: upload failed: {error}") from error
    finally:
        with contextlib.suppress(OSError):  # an unreachable store: the hidden key, if any, is never read
            hidden.unlink(missing_ok=True)


def write_bytes_atomic(path: str | os.PathLike[str] | ObjectPath, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary name."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)


def write_text_atomic(path: str | os.PathLike[str] | ObjectPath, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` through a temporary name."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike[str] | ObjectPath, content: Any) -> None:
    """Write JSON (sorted keys, non-JSON values as strings) to ``path`` through a temporary name."""
    write_text_atomic(path, json.dumps(content, sort_keys=True, indent=1, default=str))


def sha256_file(path: str | os.PathLike[str] | ObjectPath, chunk: int = COPY_CHUNK) -> str:
    """Hex sha256 of a file (local or an object), read in chunks."""
    digest = hashlib.sha256()
    with open_input(location(path)) as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(value: Any) -> str:
    """A stable hash of JSON-serialisable content."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()
