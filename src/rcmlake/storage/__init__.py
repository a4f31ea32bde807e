"""Delta I/O: the lake's paths, atomic writes and merges, the audit log and the lock."""

from rcmlake.storage.delta import Lake

__all__ = ["Lake"]
