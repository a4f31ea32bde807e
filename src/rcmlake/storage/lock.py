"""One writer per lake at a time.

Delta commits are atomic on their own, but a run is many commits with
watermarks between them; two runs interleaving would each be correct and
together waste work. A local lake takes an ``fcntl`` lock on ``_lock``;
an object-store lake relies on Delta's conditional commits (see notes).

The lock file names its holder (host, pid, start). The kernel releases an
``flock`` when its holder exits or is killed, so a lock never outlives a dead
run; a run that hangs (stopped, stuck) keeps it, and the error and
``rcmlake status`` name the process to stop: ``kill <pid>`` on that host, then
run again (a killed run re-runs to the same lake as a clean one).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rcmlake.errors import LakeLocked


def _lock_path(root: str) -> Path:
    return Path(root.removeprefix("file://")) / "_lock"


def holder(root: str) -> dict[str, Any] | None:
    """Who holds the lake's lock now (host, pid, started_at), or None when it is free."""
    path = _lock_path(root)
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                return dict(json.loads(path.read_text() or "{}"))
            except json.JSONDecodeError:
                return {}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


@contextmanager
def lake_lock(root: str, *, local: bool) -> Iterator[None]:
    if not local:
        yield
        return
    path = _lock_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = holder(root) or {}
            named = (
                f" (pid {who.get('pid')} on {who.get('host')} since {who.get('started_at')}; "
                "if it hangs, stop it with `kill <pid>` on that host and run again)"
                if who
                else ""
            )
            raise LakeLocked(f"another rcmlake run holds {path}{named}") from None
        me = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        yield
    finally:
        os.close(fd)


@contextmanager
def private_files() -> Iterator[None]:
    """Files and folders created meanwhile are the owner's alone (umask 077): the lake holds
    PHI, and a world-readable Parquet file is a disclosure. (The umask is per process; the
    CLI sets it for its whole run.)"""
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)
