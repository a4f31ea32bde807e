"""Source readers: SQL databases (EMR), landing files (claims, CPT), code-set APIs."""

from __future__ import annotations

import numpy as np

_CHUNK = 1 << 24  # bytes compared at a time: the mask stays in cache


def byte_offsets(data: bytes | np.ndarray, byte: int) -> np.ndarray:
    """The offsets of every ``byte`` in ``data``, in order.

    ``np.flatnonzero(buf == byte)`` gives the same, but allocates a mask the size of the
    file first (a 313 MB claims file: 0.12-0.47 s, mostly page faults); compared 16 MiB at a
    time, 0.09 s."""
    buf = np.frombuffer(data, np.uint8) if isinstance(data, bytes) else data
    found = [np.flatnonzero(buf[i : i + _CHUNK] == byte) + i for i in range(0, len(buf), _CHUNK)]
    return np.concatenate(found) if found else np.empty(0, np.int64)
