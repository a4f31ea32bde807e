"""Plain files beside the Delta tables: landing folders and the lake lease, local or remote.

Delta tables go through delta-rs; everything else rcmlake keeps as files (claims files
waiting in landing, ``archive/`` and ``rejected/``, the lease) goes through ``Folder``:
a local folder, or ``s3://``, ``gs://``, ``az://`` through obstore — the same Rust
``object_store`` crate delta-rs uses, so one set of environment variables
(``AWS_*``, ``GOOGLE_*``, ``AZURE_*``) reaches both. obstore's exceptions are translated
here and nowhere else.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from rcmlake.errors import StorageError, scrub

CHUNK = 1 << 20


def is_uri(location: str | Path) -> bool:
    """Whether ``location`` names an object store (``s3://…``) rather than a local path."""
    text = str(location)
    return "://" in text and not text.startswith("file://")


def join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *(p.strip("/") for p in parts if p)])


def matches(name: str, pattern: str) -> bool:
    """``Path.glob`` semantics for a key relative to its folder: ``*`` stays inside one
    folder level, a pattern with ``/`` matches that many levels."""
    if pattern.count("/") != name.count("/"):
        return False
    return all(
        fnmatch.fnmatchcase(n, p) for n, p in zip(name.split("/"), pattern.split("/"), strict=True)
    )


class Folder(Protocol):
    """Files under one root, addressed by ``/``-separated keys relative to it."""

    root: str

    def list(self, folder: str, pattern: str) -> list[str]:
        """Keys under ``folder`` whose name relative to it matches ``pattern``, sorted."""
        ...

    def exists(self, key: str) -> bool: ...

    def local(self, key: str) -> Any:
        """A context manager giving a local path with the file's content (the file itself
        when local; a private temporary copy, removed afterwards, when remote)."""
        ...

    def sha256(self, key: str) -> str: ...

    def move(self, key: str, to: str) -> None: ...

    def write_text(self, key: str, text: str) -> None: ...

    def uri(self, key: str) -> str: ...


class LocalFolder:
    def __init__(self, root: str | Path):
        self.root = str(root).removeprefix("file://").rstrip("/")

    def _path(self, key: str) -> Path:
        return Path(self.root) / key

    def list(self, folder: str, pattern: str) -> list[str]:
        base = self._path(folder)
        found = [p for p in base.glob(pattern) if p.is_file()]
        return sorted(str(p.relative_to(self.root).as_posix()) for p in found)

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    @contextmanager
    def local(self, key: str) -> Iterator[Path]:
        yield self._path(key)

    def sha256(self, key: str) -> str:
        digest = hashlib.sha256()
        with self._path(key).open("rb") as fh:
            while chunk := fh.read(CHUNK):
                digest.update(chunk)
        return digest.hexdigest()

    def move(self, key: str, to: str) -> None:
        target = self._path(to)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(self._path(key)), str(target))

    def write_text(self, key: str, text: str) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")

    def uri(self, key: str) -> str:
        return str(self._path(key))


class RemoteFolder:
    """A folder on an object store (obstore); a move is a copy and a delete."""

    def __init__(self, root: str):
        self.root = root.rstrip("/")
        self.store = open_store(self.root)

    def list(self, folder: str, pattern: str) -> list[str]:
        import obstore

        prefix = folder.strip("/")
        with translated(f"list {self.uri(prefix)}"):
            if "/" in pattern or "**" in pattern:
                found = [o for batch in obstore.list(self.store, prefix or None) for o in batch]
            else:
                found = list(obstore.list_with_delimiter(self.store, prefix or None)["objects"])
        keys = [str(o["path"]) for o in found]
        start = len(prefix) + 1 if prefix else 0
        return sorted(k for k in keys if matches(k[start:], pattern))

    def exists(self, key: str) -> bool:
        import obstore

        try:
            with translated(f"read {self.uri(key)}"):
                obstore.head(self.store, key)
        except FileNotFoundError:
            return False
        return True

    @contextmanager
    def local(self, key: str) -> Iterator[Path]:
        import obstore

        fd, name = tempfile.mkstemp(prefix="rcmlake-", suffix=PurePosixPath(key).name)
        try:
            with translated(f"read {self.uri(key)}"), os.fdopen(fd, "wb") as fh:
                for chunk in obstore.get(self.store, key).stream(CHUNK):
                    fh.write(chunk)
            yield Path(name)
        finally:
            os.unlink(name)

    def sha256(self, key: str) -> str:
        import obstore

        digest = hashlib.sha256()
        with translated(f"read {self.uri(key)}"):
            for chunk in obstore.get(self.store, key).stream(CHUNK):
                digest.update(chunk)
        return digest.hexdigest()

    def move(self, key: str, to: str) -> None:
        import obstore

        with translated(f"move {self.uri(key)}"):
            obstore.copy(self.store, key, to)
            obstore.delete(self.store, key)

    def write_text(self, key: str, text: str) -> None:
        import obstore

        with translated(f"write {self.uri(key)}"):
            obstore.put(self.store, key, text.encode())

    def uri(self, key: str) -> str:
        return join(self.root, key)


def remove_tree(location: str) -> None:
    """Delete the folder ``location`` (a local path or an object-store URI) and everything
    under it; nothing there is not an error."""
    if not is_uri(location):
        shutil.rmtree(location.removeprefix("file://"), ignore_errors=True)
        return
    import obstore

    store = open_store(location)
    with translated(f"delete {location}"):
        for batch in obstore.list(store, None):
            obstore.delete(store, [str(o["path"]) for o in batch])


def folder(root: str | Path) -> Folder:
    """The ``Folder`` for a local path or an object-store URI."""
    return RemoteFolder(str(root)) if is_uri(root) else LocalFolder(root)


def open_store(uri: str) -> Any:
    """An obstore store rooted at ``uri``; credentials and endpoint come from the environment
    (``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``, ``GOOGLE_APPLICATION_CREDENTIALS``,
    ``AZURE_STORAGE_ACCOUNT_NAME`` …), never from config. S3 replaces an object only if its
    ETag is unchanged (``conditional_put``), which the lease relies on."""
    from obstore.store import from_url

    options: dict[str, Any] = {}
    if uri.startswith(("s3://", "s3a://")):
        options["conditional_put"] = "etag"
        endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
        if endpoint.startswith("http://"):
            options["client_options"] = {"allow_http": True}
    with translated(f"open {uri}"):
        return from_url(uri, **options)


@contextmanager
def translated(doing: str) -> Iterator[None]:
    """obstore's errors as ``StorageError`` (one line, no credentials: obstore's messages name
    the path and the HTTP status, and ``scrub`` drops quoted values)."""
    from obstore.exceptions import BaseError

    try:
        yield
    except FileNotFoundError:
        raise  # obstore's "not found" (callers ask whether a file exists)
    except (BaseError, OSError) as exc:
        raise StorageError(f"cannot {doing}: {scrub(str(exc).splitlines()[0])}") from None
