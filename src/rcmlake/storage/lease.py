"""The lake lease: one writer at a time on any storage, without a lock server.

A lake on an object store has no ``flock``, and an Airflow run is many processes on
many workers. So whoever writes holds ``_lease.json`` at the lake root: an owner (a
CLI run, or one Airflow DAG run shared by its tasks), the host, the pid when the lease
lives and dies with one process, and an expiry. Every change to the file is a
conditional write — create only if absent, replace only if its ETag is the one just
read — so of two contenders exactly one wins, on S3, GCS, Azure and a local folder
alike (locally an ``flock`` guards the read-compare-write, because the local object
store has no conditional replace).

A holder renews the lease from a heartbeat thread every third of its time to live. A
lease is free when released, expired (a killed run on another machine: taken over once
``run.lease_seconds`` pass), or held by a dead process on this host (taken over at
once). A holder whose lease was taken over (it was paused past its expiry) learns it at
its next renewal, and ``check`` — called by the lake before every commit — stops it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from rcmlake.errors import LakeLocked
from rcmlake.storage.objects import is_uri, open_store, translated

LEASE_KEY = "_lease.json"


@dataclass
class Holder:
    owner: str | None  # None: released
    host: str
    pid: int | None  # set when the lease dies with its process (a CLI run)
    acquired_at: str
    expires_at: float  # seconds since the epoch

    def expired(self, now: float) -> bool:
        return self.owner is None or now >= self.expires_at

    def dead(self) -> bool:
        """Held by a process of this host that no longer runs."""
        if self.pid is None or self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def describe(self) -> str:
        until = datetime.fromtimestamp(self.expires_at, UTC).isoformat(timespec="seconds")
        pid = f" pid {self.pid}" if self.pid else ""
        return f"{self.owner} ({self.host}{pid}, since {self.acquired_at}, expires {until})"


class LeaseFile(Protocol):
    """The lease file with compare-and-swap: ``None`` from a write means another won."""

    def read(self) -> tuple[bytes | None, str | None]: ...

    def create(self, data: bytes) -> str | None: ...

    def replace(self, data: bytes, tag: str) -> str | None: ...


class ObjectLeaseFile:
    """On an object store: put-if-absent and put-if-ETag-matches."""

    def __init__(self, root: str):
        self.store = open_store(root)
        self.where = f"{root.rstrip('/')}/{LEASE_KEY}"

    def read(self) -> tuple[bytes | None, str | None]:
        import obstore

        try:
            with translated(f"read {self.where}"):
                got = obstore.get(self.store, LEASE_KEY)
                return bytes(got.bytes()), got.meta["e_tag"]
        except FileNotFoundError:
            return None, None

    def create(self, data: bytes) -> str | None:
        return self._put(data, "create")

    def replace(self, data: bytes, tag: str) -> str | None:
        return self._put(data, {"e_tag": tag})

    def _put(self, data: bytes, mode: Any) -> str | None:
        """A conditional put; None when the condition failed (another writer won)."""
        import obstore
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        with translated(f"write {self.where}"):
            try:  # inside: ``translated`` would turn a lost race into a StorageError
                return str(obstore.put(self.store, LEASE_KEY, data, mode=mode)["e_tag"])
            except (AlreadyExistsError, PreconditionError):
                return None


class LocalLeaseFile:
    """In a local folder: the read-compare-write under an ``flock`` of a sibling file; the
    tag is the content's hash."""

    def __init__(self, root: str):
        self.path = Path(root.removeprefix("file://")) / LEASE_KEY

    @contextmanager
    def _guard(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.with_suffix(".guard"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _read(self) -> tuple[bytes | None, str | None]:
        if not self.path.exists():
            return None, None
        data = self.path.read_bytes()
        return data, hashlib.sha256(data).hexdigest()

    def read(self) -> tuple[bytes | None, str | None]:
        with self._guard():
            return self._read()

    def _write(self, data: bytes) -> str:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, self.path)
        return hashlib.sha256(data).hexdigest()

    def create(self, data: bytes) -> str | None:
        with self._guard():
            return None if self.path.exists() else self._write(data)

    def replace(self, data: bytes, tag: str) -> str | None:
        with self._guard():
            return self._write(data) if self._read()[1] == tag else None


def lease_file(root: str) -> LeaseFile:
    return ObjectLeaseFile(root) if is_uri(root) else LocalLeaseFile(root)


def current(root: str) -> Holder | None:
    """Who holds the lake's lease now, or None when it is free (released or expired)."""
    data, _ = lease_file(root).read()
    who = _parse(data)
    return who if who is not None and not who.expired(time.time()) and not who.dead() else None


class Lease:
    """``owner``'s lease on the lake at ``root`` for ``ttl`` seconds at a time.

    Example::

        lease = Lease("s3://bucket/lake", owner="run-…", ttl=300, process_bound=True)
        with lease.held():
            ...  # commits; the lake calls lease.check() before each
    """

    def __init__(self, root: str, *, owner: str, ttl: float, process_bound: bool):
        self.root = root
        self.owner = owner
        self.ttl = ttl
        self.process_bound = process_bound
        self.file = lease_file(root)
        self._tag: str | None = None
        self._lost: Holder | None = None

    def _mine(self) -> bytes:
        me = Holder(
            owner=self.owner,
            host=socket.gethostname(),
            pid=os.getpid() if self.process_bound else None,
            acquired_at=datetime.now(UTC).isoformat(timespec="seconds"),
            expires_at=time.time() + self.ttl,
        )
        return json.dumps(asdict(me)).encode()

    def acquire(self) -> None:
        """Take the lease (or renew it, when the owner already holds it, as the tasks of one
        Airflow run do); ``LakeLocked`` names the holder otherwise."""
        for _ in range(20):  # lost races only: each round reads the newest state
            data, tag = self.file.read()
            who = _parse(data)
            held = who is not None and not who.expired(time.time()) and not who.dead()
            if who is not None and held and who.owner != self.owner:
                raise LakeLocked(
                    f"the lake lease {self.root}/{LEASE_KEY} is held by {who.describe()}; "
                    "wait for that run, or let the lease expire if it was killed"
                )
            won = (
                self.file.create(self._mine())
                if tag is None
                else self.file.replace(self._mine(), tag)
            )
            if won is not None:
                self._tag, self._lost = won, None
                return
        raise LakeLocked(f"the lake lease {self.root}/{LEASE_KEY} is contended; run again")

    def renew(self) -> bool:
        """Extend the lease; False once another owner holds it (this run must stop)."""
        for _ in range(5):
            data, tag = self.file.read()
            who = _parse(data)
            if who is None or tag is None or who.owner != self.owner:
                self._lost = who or self._lost
                return False
            won = self.file.replace(self._mine(), tag)
            if won is not None:
                self._tag = won
                return True
        return False

    def release(self) -> None:
        """Give the lease up (only if still ours): the next run takes it at once."""
        data, tag = self.file.read()
        who = _parse(data)
        if who is not None and tag is not None and who.owner == self.owner:
            free = Holder(None, socket.gethostname(), None, who.acquired_at, 0.0)
            self.file.replace(json.dumps(asdict(free)).encode(), tag)

    def check(self) -> None:
        """Stop (``LakeLocked``) if the heartbeat found the lease taken over."""
        if self._lost is not None:
            raise LakeLocked(
                f"this run lost the lake lease to {self._lost.describe()} (it was paused "
                "past run.lease_seconds); it stops before committing more"
            )

    @contextmanager
    def held(self, *, release: bool = True) -> Iterator[Lease]:
        """Hold the lease meanwhile, renewed by a heartbeat; ``release=False`` leaves it to the
        owner's last step (an Airflow run's tasks share one lease)."""
        self.acquire()
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.ttl / 3):
                try:
                    if not self.renew():
                        self._lost = self._lost or Holder("another run", "?", None, "?", 0.0)
                        return
                except Exception:  # a failed renewal is retried at the next beat
                    continue

        thread = threading.Thread(target=beat, name="rcmlake-lease", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join()
            if release:
                self.release()


def _parse(data: bytes | None) -> Holder | None:
    if not data:
        return None
    try:
        raw: dict[str, Any] = json.loads(data)
        return Holder(**raw)
    except (json.JSONDecodeError, TypeError):
        return None  # an unreadable lease file is taken over (replaced by its tag)
