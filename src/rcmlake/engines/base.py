"""The engine interface transforms are written against.

A transform is SQL over named relations. The runner registers inputs
(Arrow tables, pyarrow datasets over Delta) under names, runs the model's
SQL, and gets Arrow back to commit to Delta. Engines override only what
differs; capability flags tell the runner what an engine can do natively.

Every engine session provides these SQL functions to the models:

- ``surrogate_key(natural_key)``: BIGINT, the first 60 bits of ``md5(natural_key)``;
- ``version_key(natural_key, version_start)``: ``surrogate_key`` of the key and the
  version's start as epoch microseconds.

Both depend only on their arguments, so dimension keys do not move when gold is
rebuilt, and two engines give the same keys for the same data.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from typing import Any

import pyarrow as pa


class EngineSession(AbstractContextManager["EngineSession"], ABC):
    """One connection's worth of state: registered relations and temp tables."""

    @abstractmethod
    def register(self, name: str, data: Any) -> None:
        """Expose an Arrow table, record batch reader or dataset as relation ``name``."""

    @abstractmethod
    def sql(self, query: str, params: list[Any] | None = None) -> pa.Table:
        """Run a query and return its result as one Arrow table."""

    @abstractmethod
    def stream(self, query: str) -> pa.RecordBatchReader:
        """Run a query and stream its result."""

    @abstractmethod
    def execute(self, statement: str, params: list[Any] | None = None) -> None:
        """Run a statement for its effect (CREATE TEMP TABLE …)."""

    def scalar(self, query: str, params: list[Any] | None = None) -> Any:
        table = self.sql(query, params)
        return table.column(0)[0].as_py() if table.num_rows else None

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        pass


class Engine(ABC):
    """A factory of sessions plus what the engine can do."""

    name: str = "engine"

    def list_of_present(self, items: list[str]) -> str:
        """SQL for the list of the non-NULL values of ``items`` (rule names that failed)."""
        if not items:
            return "CAST([] AS VARCHAR[])"
        return f"list_filter([{', '.join(items)}], lambda x: x IS NOT NULL)"

    def row_hash(self, columns: list[str]) -> str:
        """A NULL-safe content hash of ``columns`` (NULL and '' differ), portable md5 over text."""
        if not columns:
            return "md5('')"
        parts = ", ".join(f"coalesce(CAST({c} AS VARCHAR), '\\N')" for c in columns)
        return f"md5(concat_ws('|', {parts}))"

    @abstractmethod
    def session(self) -> EngineSession: ...
