"""One writer per lake at a time.

Delta commits are atomic on their own, but a run is many commits with
watermarks between them; two runs interleaving would each be correct and
together waste work. A local lake takes an ``fcntl`` lock on ``_lock``;
an object-store lake relies on Delta's conditional commits (see notes).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rcmlake.errors import LakeLocked


@contextmanager
def lake_lock(root: str, *, local: bool) -> Iterator[None]:
    if not local:
        yield
        return
    path = Path(root.removeprefix("file://"))
    path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path / "_lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LakeLocked(
                f"another rcmlake run holds {path}/_lock; wait for it to finish"
            ) from None
        yield
    finally:
        os.close(fd)
