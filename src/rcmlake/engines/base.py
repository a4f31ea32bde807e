"""The engine interface transforms are written against.

A transform is SQL over named relations. The runner names lake tables as
relations (``read_lake``), runs the model's SQL, and has the engine write the
result to a Delta table (append, overwrite by predicate, MERGE): data moves
between the engine and the lake, never through the Python process as a whole
table. Capability flags tell the runner what an engine does natively.

Every engine session provides these SQL functions to the models:

- ``surrogate_key(natural_key)``: BIGINT, the first 60 bits of ``md5(natural_key)``;
- ``version_key(natural_key, version_start)``: ``surrogate_key`` of the key and the
  version's start as epoch microseconds;
- ``local_to_utc(ts, zone)``: a naive timestamp of wall-clock time in ``zone``, in UTC.

Both depend only on their arguments, so dimension keys do not move when gold is
rebuilt, and two engines give the same keys for the same data.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa

if TYPE_CHECKING:
    from rcmlake.storage.delta import Lake


def timestamp(at: datetime) -> str:
    """SQL for the instant ``at`` as a UTC timestamp (sessions are UTC), in any dialect."""
    return f"CAST('{at.astimezone(UTC):%Y-%m-%d %H:%M:%S.%f}' AS TIMESTAMPTZ)"


def quote_ident(name: str) -> str:
    """``name`` as a standard SQL quoted identifier, ``"`` doubled: always a name, never SQL."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """``text`` as a standard SQL string literal, ``'`` doubled: always a value, never SQL."""
    return "'" + text.replace("'", "''") + "'"


@dataclass(frozen=True)
class Capabilities:
    """What an engine does natively; the runner decides by these, never by engine name.

    - ``merge_records_metadata``: its MERGE commits carry rcmlake's commit metadata.
      Where not (Spark's ``MERGE INTO`` has no per-statement metadata, and Sail ignores
      ``spark.databricks.delta.commitInfo.userMetadata``), the lake stamps the merge with
      a metadata-only commit right after it.
    - ``empty_writes_commit``: writing no rows still commits (delta-rs does; Sail writes
      nothing). Where not, the lake commits the empty result itself.
    """

    merge_records_metadata: bool = True
    empty_writes_commit: bool = True


class EngineSession(AbstractContextManager["EngineSession"], ABC):
    """One connection's worth of state: registered relations and temp tables.

    SQL given to a session is written in DuckDB's dialect (``engines.dialect``); the
    session runs it in its own. Relations may be schema-qualified (``silver.claims``).
    Data moves between the engine and the lake through ``read_lake`` and the writes,
    never through Python: only small results (counts, batch ids) come back as Arrow.
    """

    @abstractmethod
    def register(self, name: str, data: pa.Table) -> None:
        """Expose a small Arrow table (batch ids, parameters) as relation ``name``."""

    @abstractmethod
    def read_lake(
        self,
        name: str,
        lake: Lake,
        path: str,
        *,
        empty: pa.Schema | None = None,
        version: int | None = None,
        without: int | None = None,
    ) -> bool:
        """Expose the Delta table ``path`` (its ``version``) as relation ``name``; a table not
        written yet reads as an empty table of ``empty`` when given. Returns whether it exists.

        ``without``: another version of the table, for comparing the two as multisets of
        rows. An engine that reads by file leaves out the files both versions hold (the same
        rows on both sides, which cancel out), so a MERGE that rewrote one month's files is
        compared in that month's rows; one that cannot reads the whole version, which such a
        comparison gives the same answer from."""

    @abstractmethod
    def sql(self, query: str, params: list[Any] | None = None) -> pa.Table:
        """Run a query and return its (small) result as one Arrow table."""

    def stream(self, query: str, params: list[Any] | None = None) -> pa.RecordBatchReader:
        """Stream a result into this process (in-process engines: bronze, exports)."""
        raise NotImplementedError(f"{type(self).__name__} does not stream results to the client")

    @abstractmethod
    def execute(self, statement: str, params: list[Any] | None = None) -> None:
        """Run a statement for its effect (CREATE TEMP VIEW …)."""

    @abstractmethod
    def materialize(self, name: str, query: str, params: list[Any] | None = None) -> None:
        """Compute ``query`` once into temp table ``name`` (later statements read it)."""

    @abstractmethod
    def drop(self, name: str) -> None:
        """Forget temp table ``name`` (``materialize``'s), freeing what it holds."""

    def release(self, name: str) -> None:
        """``materialize``d ``name`` is done with (what was built from it is materialised
        too): free what it holds. An engine whose later relations may still be computed
        from it (Spark: a cache is a hint, its views are plans) only drops the copy."""
        self.drop(name)

    @abstractmethod
    def columns(self, relation: str) -> dict[str, str]:
        """Column name → type of ``relation``, types named as DuckDB names them."""

    @abstractmethod
    def write(
        self,
        lake: Lake,
        path: str,
        query: str,
        params: list[Any] | None = None,
        *,
        mode: str = "append",
        metadata: dict[str, Any] | None = None,
        partition_by: list[str] | None = None,
        description: str | None = None,
        comments: dict[str, str] | None = None,
        schema_mode: str | None = None,
        predicate: str | None = None,
        replace: list[dict[str, Any]] | None = None,
        cluster_by: str | None = None,
    ) -> int:
        """Write ``query``'s result to Delta table ``path`` in one commit; returns its version.

        ``replace``: ``predicate`` as the partitions it selects (values of ``partition_by``,
        None for the NULL partition), when it selects whole partitions. An engine that writes
        its own files replaces those partitions' files by them; others use ``predicate``.

        ``cluster_by``: a date column of an unpartitioned table; each file written holds the
        rows of one month of it. A layout, not a partitioning (no column, no partition in
        the log): a later MERGE of one month's rows finds them in that month's files and
        rewrites those only. An engine that cannot cluster writes as it would without."""

    @abstractmethod
    def merge(
        self,
        lake: Lake,
        path: str,
        query: str,
        params: list[Any] | None = None,
        *,
        on: list[str],
        update_when: str | None = None,
        metadata: dict[str, Any] | None = None,
        cluster_by: str | None = None,
    ) -> None:
        """Upsert ``query``'s rows (alias ``s``) into ``path`` (alias ``t``) by key ``on``:
        update matched rows satisfying ``update_when``, insert the rest. ``cluster_by``: as
        for ``write``, for the files the merge writes."""

    @abstractmethod
    def merge_scd2(
        self,
        lake: Lake,
        path: str,
        query: str,
        params: list[Any] | None = None,
        *,
        key: str,
        columns: list[str],
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Apply an SCD2 change set (``Lake.merge_scd2`` describes its rows) in one commit."""

    @abstractmethod
    def update_columns(
        self,
        lake: Lake,
        path: str,
        query: str,
        *,
        on: list[str],
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Set the non-key columns of ``query``'s rows on the rows matching them by ``on``."""

    def scalar(self, query: str, params: list[Any] | None = None) -> Any:
        table = self.sql(query, params)
        return table.column(0)[0].as_py() if table.num_rows else None

    def keys_unique(self, relation: str, key: str) -> bool:
        """Whether every row of ``relation`` has a ``key`` (a column list or expression) of its
        own, NULL counting as one key.

        Counted by the key's 64-bit hash first: distinct hashes are distinct keys, so the key
        itself (long text at 10M rows: 17.4M 85-character keys took 3.9 s to group, their
        hashes 2.5 s) is grouped only when a hash repeats, a collision costing that grouping
        and never a wrong answer."""
        repeats = "SELECT count(*) FROM (SELECT {0} FROM {1} GROUP BY {0} HAVING count(*) > 1)"
        if not self.scalar(repeats.format(f"hash({key})", relation)):
            return True
        return not self.scalar(repeats.format(key, relation))

    def select_list(self, relation: str, exclude: tuple[str, ...] = ()) -> str:
        """``relation``'s columns but ``exclude``, quoted: ``* EXCLUDE`` in any dialect."""
        return ", ".join(quote_ident(c) for c in self.columns(relation) if c not in exclude)

    def union_all_by_name(self, name: str, queries: list[str]) -> None:
        """View ``name``: the rows of ``queries`` matched by column name, a column missing
        from a query as NULL (DuckDB's ``UNION ALL BY NAME``, in any dialect)."""
        parts = []
        for i, query in enumerate(queries):
            self.execute(f"CREATE OR REPLACE TEMP VIEW {name}_{i} AS {query}")
            parts.append((f"{name}_{i}", self.columns(f"{name}_{i}")))
        types: dict[str, str] = {}
        for _, cols in parts:
            for c, t in cols.items():
                if types.get(c, "NULL") == "NULL":
                    types[c] = t
        # a missing column is a NULL of the type the other queries give it (an untyped NULL
        # in a first branch types the whole column on some engines)
        selects = [
            "SELECT "
            + ", ".join(
                quote_ident(c) if c in cols else f"CAST(NULL AS {t}) AS {quote_ident(c)}"
                for c, t in types.items()
            )
            + f" FROM {view}"
            for view, cols in parts
        ]
        self.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS " + " UNION ALL ".join(selects))

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        pass


class Engine(ABC):
    """A factory of sessions plus what the engine can do."""

    name: str = "engine"
    capabilities = Capabilities()

    @contextmanager
    def outside(self, nbytes: int) -> Iterator[None]:
        """The process is about to hold ``nbytes`` outside the engine (an 835 parsed in
        Python, on a thread of its own). An in-process engine lowers its memory limit by them
        meanwhile, so that the two together stay within ``run.memory_limit``, and runs on a
        thread fewer; a remote engine's memory and cores are not this process's, so by
        default there is nothing to give back."""
        yield

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
        """``expr`` (text) with blank, ``NULL``, ``null`` and ``N/A`` as SQL NULL.

        ``lower(trim(…))`` copies every value. Only a value no longer than the longest
        spelling, or one with a space at either end (``trim`` removes spaces only), can trim
        to a spelling, so the others skip it: claim adjustments' keys at scale 10 spent 17 s of
        CPU in it, the guarded form is 2.7 times faster on 17M keys."""
        spelled = ", ".join(f"'{m}'" for m in self.MISSING)
        short = max(len(m) for m in self.MISSING)
        could_be = (
            f"(length({expr}) <= {short} OR starts_with({expr}, ' ') OR ends_with({expr}, ' '))"
        )
        return (
            f"CASE WHEN {could_be} AND lower(trim({expr})) IN ({spelled}) THEN NULL ELSE {expr} END"
        )

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
            return f"coalesce(TRY_CAST({v} AS DATE), CAST({self._parsed(v)} AS DATE))"
        if target == "timestamp":
            if raw == "TIMESTAMP WITH TIME ZONE":
                return f"CAST({expr} AS TIMESTAMP)"  # the session is UTC
            if raw in ("DATE", "TIMESTAMP") or raw.startswith("TIMESTAMP"):
                ts = f"CAST({expr} AS TIMESTAMP)"
            else:
                ts = f"coalesce(TRY_CAST({v} AS TIMESTAMP), {self._parsed(v)})"
            if timezone:
                return f"local_to_utc({ts}, '{timezone}')"
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

    def _parsed(self, v: str) -> str:
        """``v`` parsed by the first of ``DATE_FORMATS`` that fits (NULL if none does)."""
        return "coalesce(" + ", ".join(f"try_strptime({v}, '{f}')" for f in self.DATE_FORMATS) + ")"

    def cast_error(self, column: str, expr: str, raw_type: str, typed: str) -> str | None:
        """SQL for the column's name when a present value did not type, else NULL.

        Never the value: it may be a date of birth or a note, and ``cast_errors`` reaches
        silver, where analysts read. The raw value stays in bronze, found by the row key."""
        if typed == expr:  # already of the CDM type: nothing to parse, nothing can fail
            return None
        raw = raw_type.upper()
        if raw.startswith("VARCHAR") or raw in ("TEXT", "STRING"):
            v = self.missing_as_null(expr)
            return f"CASE WHEN {v} IS NOT NULL AND {typed} IS NULL THEN '{column}' END"
        return f"CASE WHEN {expr} IS NOT NULL AND {typed} IS NULL THEN '{column}' END"

    @abstractmethod
    def session(self) -> EngineSession: ...
