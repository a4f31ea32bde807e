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


def quote_ident(name: str) -> str:
    """``name`` as a standard SQL quoted identifier, ``"`` doubled: always a name, never SQL."""
    return '"' + name.replace('"', '""') + '"'


class EngineSession(AbstractContextManager["EngineSession"], ABC):
    """One connection's worth of state: registered relations and temp tables."""

    @abstractmethod
    def register(self, name: str, data: Any) -> None:
        """Expose an Arrow table, record batch reader or dataset as relation ``name``."""

    @abstractmethod
    def sql(self, query: str, params: list[Any] | None = None) -> pa.Table:
        """Run a query and return its result as one Arrow table."""

    @abstractmethod
    def stream(self, query: str, params: list[Any] | None = None) -> pa.RecordBatchReader:
        """Run a query and stream its result (writes consume it batch by batch)."""

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

    # the spellings of "no value" that sources deliver in text columns (compared trimmed, any case)
    MISSING = ("", "null", "n/a")
    DATE_FORMATS = (
        "%m/%d/%Y",
        "%Y-%m-%d %H:%M:%S",
        "%m/%d/%Y %H:%M:%S",
        "%m/%d/%Y %H:%M",
        "%Y%m%d",
    )

    def missing_as_null(self, expr: str) -> str:
        """``expr`` (text) with blank, ``NULL``, ``null`` and ``N/A`` as SQL NULL."""
        spelled = ", ".join(f"'{m}'" for m in self.MISSING)
        return f"CASE WHEN lower(trim({expr})) IN ({spelled}) THEN NULL ELSE {expr} END"

    def safe_cast(self, expr: str, raw_type: str, target: str, timezone: str | None = None) -> str:
        """SQL typing ``expr`` (of engine type ``raw_type``) as a CDM ``target`` type without
        ever failing: a value that does not parse becomes NULL (the caller records it).

        Targets: ``text``, ``date``, ``timestamp`` (naive UTC; ``timezone`` names the zone
        naive source values are in), ``decimal`` (DECIMAL(18,2) money), ``bigint``, ``raw``.
        """
        raw = raw_type.upper()
        is_text = raw.startswith("VARCHAR") or raw in ("TEXT", "STRING", "NULL")
        numeric = raw in (
            "TINYINT",
            "SMALLINT",
            "INTEGER",
            "BIGINT",
            "HUGEINT",
            "UTINYINT",
            "USMALLINT",
            "UINTEGER",
            "UBIGINT",
        ) or raw.startswith("DECIMAL")
        floating = raw in ("FLOAT", "DOUBLE", "REAL")
        v = self.missing_as_null(expr if is_text else f"CAST({expr} AS VARCHAR)")
        formats = "[" + ", ".join(f"'{f}'" for f in self.DATE_FORMATS) + "]"
        if target == "raw":
            return expr
        if target == "text":
            if is_text:
                return v
            if floating:  # 99213.0 from a REAL column is the code 99213
                return f"CASE WHEN {expr} = floor({expr}) THEN CAST(TRY_CAST({expr} AS BIGINT) AS VARCHAR) ELSE CAST({expr} AS VARCHAR) END"
            return f"CAST({expr} AS VARCHAR)"
        if target == "date":
            if raw == "DATE":
                return expr
            if raw.startswith("TIMESTAMP"):
                return f"CAST({expr} AS DATE)"
            return f"coalesce(TRY_CAST({v} AS DATE), CAST(try_strptime({v}, {formats}) AS DATE))"
        if target == "timestamp":
            if raw == "TIMESTAMP WITH TIME ZONE":
                return f"CAST({expr} AS TIMESTAMP)"  # the session is UTC
            if raw in ("DATE", "TIMESTAMP") or raw.startswith("TIMESTAMP"):
                ts = f"CAST({expr} AS TIMESTAMP)"
            else:
                ts = f"coalesce(TRY_CAST({v} AS TIMESTAMP), try_strptime({v}, {formats}))"
            if timezone:
                return f"CAST(timezone('{timezone}', {ts}) AS TIMESTAMP)"
            return ts
        if target == "decimal":
            if numeric:
                return f"TRY_CAST({expr} AS DECIMAL(18, 2))"
            if floating:
                return f"TRY_CAST(round({expr}, 2) AS DECIMAL(18, 2))"
            cleaned = f"replace(replace(trim({v}), ',', ''), '$', '')"
            return f"TRY_CAST({cleaned} AS DECIMAL(18, 2))"
        if target == "bigint":
            if numeric or floating:
                return f"TRY_CAST({expr} AS BIGINT)"
            return f"coalesce(TRY_CAST({v} AS BIGINT), TRY_CAST(TRY_CAST({v} AS DECIMAL(38, 6)) AS BIGINT))"
        raise ValueError(f"unknown CDM type {target!r}")

    def cast_error(self, column: str, expr: str, raw_type: str, typed: str) -> str | None:
        """SQL for the column's name when a present value did not type, else NULL.

        Never the value: it may be a date of birth or a note, and ``cast_errors`` reaches
        silver, where analysts read. The raw value stays in bronze, found by the row key."""
        raw = raw_type.upper()
        if raw.startswith("VARCHAR") or raw in ("TEXT", "STRING"):
            v = self.missing_as_null(expr)
            return f"CASE WHEN {v} IS NOT NULL AND {typed} IS NULL THEN '{column}' END"
        return f"CASE WHEN {expr} IS NOT NULL AND {typed} IS NULL THEN '{column}' END"

    @abstractmethod
    def session(self) -> EngineSession: ...
