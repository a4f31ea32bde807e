"""DuckDB, the embedded engine: reads a local Delta table's files with its own Parquet
reader (delta-rs' datasets elsewhere), writes a local table's files with its own Parquet
writer and commits them through delta-rs (streams record batches into delta-rs' writer and
MERGE elsewhere), and spills to disk past its memory limit."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import tempfile
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
from deltalake import DeltaTable, Schema

from rcmlake.engines.base import Engine, EngineSession, quote_ident, quote_literal
from rcmlake.engines.dialect import view_name
from rcmlake.errors import EngineError, scrub
from rcmlake.storage.delta import ROWS_INSERTED, DataFile, Lake, LoggedFile
from rcmlake.storage.lake_types import lake_schema, to_lake_stream

# the month a clustered write (``cluster_by``) files a row under: a folder name, never a
# column. Not ``_``-prefixed: vacuum (delta-rs, Spark) skips such folders as hidden, and would
# never remove the files a MERGE replaced there
CLUSTER = "rcmlake_month"
DICTIONARY_ENTRIES = 10_000  # per row group, past which a Parquet column is written plain
BATCH_ROWS = 122_880  # DuckDB's row group size: batches stay bounded whatever the table size

# Functions the models may call (engines/base.py documents them; every engine provides them),
# per connection: a session's catalog is its own, so the functions are too.
MACROS = (
    # 60 bits of md5: positive, so never the unknown member's -1; the same on any engine
    "CREATE TEMP MACRO surrogate_key(natural_key) AS "
    "CAST('0x' || left(md5(CAST(natural_key AS VARCHAR)), 15) AS BIGINT)",
    # a version is its natural key and its start, as epoch microseconds (no time zone in the text)
    "CREATE TEMP MACRO version_key(natural_key, version_start) AS surrogate_key("
    "CAST(natural_key AS VARCHAR) || '|' || CAST(epoch_us(version_start) AS VARCHAR))",
    # wall-clock time in a zone, as naive UTC (the session is UTC)
    "CREATE TEMP MACRO local_to_utc(ts, zone) AS CAST(timezone(zone, ts) AS TIMESTAMP)",
)


def connect(
    database: str = ":memory:", config: dict[str, Any] | None = None
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection whose session time zone is UTC, whatever the host's ``TZ``.

    Naive lake timestamps are UTC; without this, ``current_date``, TIMESTAMPTZ -> DATE
    casts and ``strftime`` follow the machine's zone and gold changes with it.
    (``TimeZone`` cannot go in the connect config: ICU loads only after connecting.)
    """
    con = duckdb.connect(database, config=config or {})
    _prepare(con)
    return con


def _prepare(con: duckdb.DuckDBPyConnection) -> None:
    """The connection-local settings and functions every session has (``connect``)."""
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")  # the console reports progress, not DuckDB
    for macro in MACROS:
        con.execute(macro)


# errors about the SQL text itself (names, syntax): they quote the query, never data
_ABOUT_THE_QUERY = (duckdb.BinderException, duckdb.CatalogException, duckdb.ParserException)


def _translated(exc: duckdb.Error) -> EngineError:
    """DuckDB's error as rcmlake's, one line; a data error (conversion, out of range …)
    quotes the offending value, which may be PHI, so its quoted text is scrubbed."""
    line = str(exc).splitlines()[0]
    return EngineError(f"DuckDB: {line if isinstance(exc, _ABOUT_THE_QUERY) else scrub(line)}")


def scannable(data: Any) -> Any:
    """``data`` as DuckDB can scan it: a pyarrow dataset with a file written as string_view
    (delta-rs MERGE, DELETE and OPTIMIZE write them; plain writes do not) becomes a Scanner.

    DuckDB pushes a filter into a dataset as a pyarrow expression typed by the dataset's
    schema (``string``), and pyarrow has no kernel comparing ``string`` with ``string_view``,
    so ``WHERE claim_status = 'Paid'`` fails on such a table. A Scanner is read whole and
    DuckDB filters it; tables without view-typed files keep the pushdown (pruned scans).
    """
    if not isinstance(data, ds.FileSystemDataset):
        return data
    for fragment in data.get_fragments():
        if any(
            pa.types.is_string_view(f.type) or pa.types.is_binary_view(f.type)
            for f in fragment.physical_schema
        ):
            return data.scanner()
    return data


def _hive_folders(files: list[str], partitions: list[dict[str, Any]]) -> bool:
    """Whether every file sits in the ``column=value`` folders of its partition values in the
    log (delta-rs writes them so; the Delta protocol does not require it). A NULL value
    does not count: its folder name is a convention DuckDB does not read as NULL."""
    for file, values in zip(files, partitions, strict=True):
        folders = file.replace("\\", "/").split("/")[:-1]
        for column, value in values.items():
            if value is None or f"{column}={value}" not in folders:
                return False
    return True


class DuckDBSession(EngineSession):
    """A connection with a catalog of its own. No table is ever whole in Python: a write
    is DuckDB's Parquet writer plus a commit, or a stream of its result batches."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        catalog: str | None = None,
        engine: DuckDBEngine | None = None,
    ):
        self.con = con
        self._engine = engine  # its database and spill folder live while the session does
        # the in-memory catalog this session owns in the engine's shared database (None: the
        # session is a database of its own, which may be locked down)
        self.catalog = catalog

    def register(self, name: str, data: Any) -> None:
        schema, _, _ = name.rpartition(".")
        if not schema:
            self.con.register(name, scannable(data))
            return
        self.con.register(view_name(name), scannable(data))
        self.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        self.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM {view_name(name)}")

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
        scan = lake.scan(path, version)
        if scan is None:
            if empty is not None:
                self.register(name, empty.empty_table())
            return False
        data, files, partitions = scan
        if files and without is not None and (other := lake.table(path, without)) is not None:
            shared = set(other.file_uris()) if lake.files_are_the_rows(other) else set()
            mine = [i for i, f in enumerate(files) if f not in shared]
            if not mine:
                self.register(name, data.schema.empty_table())
                return True
            files = [files[i] for i in mine]
            partitions = None if partitions is None else [partitions[i] for i in mine]
        if files and (not partitions or _hive_folders(files, partitions)):
            self._read_parquet(name, files, data.schema, partitions)
        else:
            self.register(name, data)
        return True

    def _read_parquet(
        self,
        name: str,
        files: list[str],
        schema: pa.Schema,
        partitions: list[dict[str, Any]] | None = None,
        file_column: str | None = None,
    ) -> None:
        """``name`` as DuckDB's own Parquet scan of ``files``, typed as the table's schema.

        Through a pyarrow dataset, a table with a file that delta-rs wrote as string_view
        (MERGE does) is scanned whole, every column, without filter pushdown (``scannable``):
        at 10M rows that read the whole table into Python. DuckDB's reader prunes columns and
        row groups and stays within its memory limit. A column no file has yet (added by a
        schema change) reads as NULL of its type.
        """
        typed = f"_schema_{view_name(name)}"
        self.con.register(typed, schema.empty_table())
        types = self.columns(typed)
        self.con.unregister(typed)
        listed = ", ".join(quote_literal(str(f)) for f in files)
        options = "union_by_name = true" + (", filename = true" if file_column else "")
        if partitions:
            # a file holds no partition column: DuckDB reads it from the hive-style folder
            # (and prunes files by it), once the log's values are seen to match the folders
            hive = {c: types[c] for c in partitions[0]}
            typed_as = ", ".join(f"{quote_literal(c)}: {quote_literal(t)}" for c, t in hive.items())
            options += f", hive_partitioning = true, hive_types = {{{typed_as}}}"
        else:  # a clustered table's month folders are a layout, not columns (``_copy``)
            options += ", hive_partitioning = false"
        scan = f"read_parquet([{listed}], {options})"
        present = {r["column_name"] for r in self.sql(f"DESCRIBE SELECT * FROM {scan}").to_pylist()}
        select = ", ".join(
            f"CAST({quote_ident(c) if c in present else 'NULL'} AS {t}) AS {quote_ident(c)}"
            for c, t in types.items()
        ) + (f", filename AS {quote_ident(file_column)}" if file_column else "")
        schema_name, _, _ = name.rpartition(".")
        if schema_name:
            self.execute(f"CREATE SCHEMA IF NOT EXISTS {schema_name}")
            self.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT {select} FROM {scan}")
        else:
            self.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT {select} FROM {scan}")

    def sql(self, query: str, params: list[Any] | None = None) -> pa.Table:
        try:
            return self.con.sql(query, params=params).to_arrow_table()
        except duckdb.Error as exc:
            raise _translated(exc) from None

    def stream(self, query: str, params: list[Any] | None = None) -> pa.RecordBatchReader:
        """The result as a stream of record batches (the session must stay open while read)."""
        try:
            return self.con.sql(query, params=params).to_arrow_reader(BATCH_ROWS)
        except duckdb.Error as exc:
            raise _translated(exc) from None

    def execute(self, statement: str, params: list[Any] | None = None) -> None:
        try:
            self.con.execute(statement, params or [])
        except duckdb.Error as exc:
            raise _translated(exc) from None

    def materialize(self, name: str, query: str, params: list[Any] | None = None) -> None:
        schema, _, _ = name.rpartition(".")
        if schema:  # temp tables have no schema; the session's database is in memory anyway
            self.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            self.execute(f"CREATE OR REPLACE TABLE {name} AS {query}", params)
        else:
            self.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {query}", params)

    def drop(self, name: str) -> None:
        self.execute(f"DROP TABLE IF EXISTS {name}")

    def columns(self, relation: str) -> dict[str, str]:
        rows = self.sql(f"DESCRIBE {relation}").to_pylist()
        return {r["column_name"]: r["column_type"] for r in rows}

    def _rows(
        self, query: str, params: list[Any] | None, comments: dict[str, str] | None = None
    ) -> pa.RecordBatchReader:
        return to_lake_stream(self.stream(query, params), comments)

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
        # a predicate that selects whole partitions is a swap of their files: the new files
        # are written by DuckDB and committed with the removal of the old ones
        whole = predicate is None or (replace is not None and mode == "overwrite")
        if (
            whole
            and not params
            and lake.is_local
            and (own := self._writable(query, lake.table(path), comments))
        ):
            types, schema = own
            files = self._copy(query, lake.uri(path), types, schema, partition_by or [], cluster_by)
            return lake.commit_files(
                path,
                files,
                schema=schema,
                mode=mode,
                metadata=metadata,
                partition_by=partition_by,
                description=description,
                replace=None if predicate is None else replace,
            )
        return lake.write(
            path,
            self._rows(query, params, comments),
            mode=mode,
            metadata=metadata,
            partition_by=partition_by,
            description=description,
            schema_mode=schema_mode,
            predicate=predicate,
        )

    def _writable(
        self, query: str, table: DeltaTable | None, comments: dict[str, str] | None
    ) -> tuple[dict[str, str], pa.Schema] | None:
        """The result's column types and lake schema, when DuckDB's writer can write it as
        files of ``table`` (types it writes as the lake types them, the table's columns);
        None: delta-rs' writer."""
        types = self.columns(_sub(query))
        schema = self._lake_schema(query, comments)
        return (types, schema) if _copyable(types) and _same_schema(table, schema) else None

    def _lake_schema(self, query: str, comments: dict[str, str] | None) -> pa.Schema:
        """The lake schema the result of ``query`` is written in (``to_lake_stream``)."""
        return to_lake_stream(self.stream(f"SELECT * FROM {_sub(query)} LIMIT 0"), comments).schema

    def _copy(
        self,
        query: str,
        folder: str,
        types: dict[str, str],
        schema: pa.Schema,
        partition_by: list[str],
        cluster_by: str | None = None,
    ) -> list[DataFile]:
        """Write the result of ``query`` as Parquet files into ``folder`` (a table's, local)
        with DuckDB's own writer, returning them with their Delta statistics.

        Why not stream into delta-rs: its writer held about 300 MB more per 100 MB file
        until the commit (2.1 GB for a 10M-row silver table at scale 10), outside DuckDB's
        memory limit; DuckDB's writer stays within it, as fast.

        ``cluster_by`` (a date column; unpartitioned tables): the rows are written by the
        month of it, one folder per month, the month itself in no file and in no partition
        of the log (``write``). Partitioning by month costs less than sorting: rewriting 10M
        silver transactions took 14.2-15.1 s so, 10.2-11.0 s unclustered, about 20 s sorted."""
        select = ", ".join(
            f"CAST({quote_ident(c)} AS TIMESTAMPTZ) AS {quote_ident(c)}"
            if t.startswith("TIMESTAMP") and t != "TIMESTAMP WITH TIME ZONE"
            else quote_ident(c)
            for c, t in types.items()
        )
        options = [
            "FORMAT parquet",
            "COMPRESSION snappy",
            # a column of more distinct values than this per row group is written plain at
            # once, and no Bloom filters (DuckDB builds them from dictionaries): at scale 10,
            # 17.4M claim adjustments (three keys of ~85 characters) wrote in 12.0 s against
            # 14.2-15.3 s, 0.5% larger; low-cardinality columns keep their dictionaries
            f"DICTIONARY_SIZE_LIMIT {DICTIONARY_ENTRIES}",
            "WRITE_BLOOM_FILTER false",
            f"FILE_SIZE_BYTES '{FILE_SIZE}'",
            "FILENAME_PATTERN 'part-{uuid}'",
            "APPEND",  # new names beside the table's files and log
            "RETURN_STATS",
        ]
        if partition_by:
            options.append(f"PARTITION_BY ({', '.join(quote_ident(c) for c in partition_by)})")
        elif cluster_by:
            select += f", CAST(date_trunc('month', {quote_ident(cluster_by)}) AS DATE) AS {CLUSTER}"
            options += [f"PARTITION_BY ({CLUSTER})", "WRITE_PARTITION_COLUMNS false"]
        root = folder.removeprefix("file://")
        os.makedirs(root, exist_ok=True)
        try:
            result = self.con.execute(
                f"COPY (SELECT {select} FROM {_sub(query)}) TO {quote_literal(root)} "
                f"({', '.join(options)})"
            )
            names = [d[0] for d in result.description or []]
            rows = [dict(zip(names, row, strict=True)) for row in result.fetchall()]
        except duckdb.Error as exc:
            raise _translated(exc) from None
        return [_data_file(root, row, schema, set(partition_by)) for row in rows]

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
        if not lake.holds_files(path):
            # the first merge creates the table, and one into a table a rollback emptied has
            # no row to match: a plain write either way (new columns join, as a merge's do)
            self.write(
                lake,
                path,
                query,
                params,
                mode="append",
                metadata=metadata,
                cluster_by=cluster_by,
                schema_mode="merge",
            )
            return
        base = lake.table(path)
        if (
            not params
            and base is not None
            and lake.files_are_the_rows(base)
            and not base.metadata().partition_columns
            and (own := self._writable(query, base, None))
        ):
            self._merge_files(
                lake, path, base, query, own[1], on, update_when, metadata, cluster_by
            )
            return
        lake.merge(
            path, self._rows(query, params), on=on, update_when=update_when, metadata=metadata
        )

    def _merge_files(
        self,
        lake: Lake,
        path: str,
        base: DeltaTable,
        query: str,
        schema: pa.Schema,
        on: list[str],
        update_when: str | None,
        metadata: dict[str, Any] | None,
        cluster_by: str | None = None,
    ) -> None:
        """MERGE as a rewrite of the files it touches, by DuckDB, committed with their removal.

        Matched target rows satisfying ``update_when`` are replaced by their source row, source
        rows matching no target row are inserted, everything else stays where it is: the
        files holding a replaced row are rewritten (copy-on-write, as delta-rs does), the
        others are not read beyond the key and ``update_when``'s columns. Why: for a 1% edit
        spread over silver transactions' 10M rows, delta-rs' MERGE took 12.6 s (rewriting
        9.9M rows) and its buffers sat outside DuckDB's limit; DuckDB rewrites 10M rows in
        6.6 s within it. Keys are unique per table (an upsert keeps one row per key), as the
        MERGE's own semantics require of a source. With ``cluster_by`` the rewrite is
        clustered as the table's first write was, so an edit of last month's services
        rewrites last month's files and no others, then and in later runs."""
        files = lake.logged_files(base)
        by_local = {f.local: f for f in files}
        self._read_parquet("merge_target", list(by_local), schema, file_column="_merge_file")
        self.materialize("merge_source", query)
        keys = ", ".join(f"t.{quote_ident(k)}" for k in on)
        match = " AND ".join(f"t.{quote_ident(k)} = s.{quote_ident(k)}" for k in on)
        # every target row a source row matches, and whether it is replaced
        self.materialize(
            "merge_matched",
            f"SELECT t._merge_file, {keys}, coalesce({update_when or 'true'}, false) AS _replace "
            f"FROM merge_target t JOIN merge_source s ON {match}",
        )
        touched = [
            by_local[f]
            for f in self.sql("SELECT DISTINCT _merge_file FROM merge_matched WHERE _replace")
            .column(0)
            .to_pylist()
        ]
        cols = ", ".join(quote_ident(c) for c in schema.names)
        same = " AND ".join(f"m.{quote_ident(k)} = {{side}}.{quote_ident(k)}" for k in on)
        kept = (
            f"SELECT {cols} FROM merge_target t WHERE t._merge_file IN "
            f"({', '.join(quote_literal(f.local) for f in touched)}) AND NOT EXISTS "
            f"(SELECT 1 FROM merge_matched m WHERE m._replace AND {same.format(side='t')})"
            if touched
            else f"SELECT {cols} FROM merge_target t WHERE false"
        )
        new_rows = (
            f"SELECT {cols} FROM merge_source s WHERE NOT EXISTS "
            f"(SELECT 1 FROM merge_matched m WHERE NOT m._replace AND {same.format(side='s')})"
        )
        rows = f"{kept} UNION ALL {new_rows}"
        # the source rows no target row matched (keys are unique on both sides): recorded, so a
        # reader of the log knows this commit added no key when it is 0 (``kept_keys``)
        inserted = int(
            self.scalar(
                "SELECT (SELECT count(*) FROM merge_source) - (SELECT count(*) FROM merge_matched)"
            )
        )
        metadata = {**(metadata or {}), ROWS_INSERTED: inserted}
        # nothing replaced and nothing new: no commit, as delta-rs' MERGE makes none
        if touched or inserted:
            written = self._copy(
                rows, lake.uri(path), self.columns(_sub(rows)), schema, [], cluster_by
            )
            lake.commit_files(
                path, written, schema=schema, metadata=metadata, remove=touched, base=base
            )
        for name in ("merge_matched", "merge_source"):
            self.drop(name)
        self.execute("DROP VIEW IF EXISTS merge_target")

    def compact_clustered(self, lake: Lake, path: str, cluster_by: str) -> dict[str, int]:
        """Compact clustered table ``path`` (``_copy``) month by month: rewrite the files that
        break its layout — files outside the month folders (written by another writer, or by
        delta-rs' compaction, which packs small files of any month together), and a month's
        small files when it has several (each MERGE that inserts rows of a month adds one) —
        clustered, in one commit that only rewrites files (``data_change`` false, marked as
        maintenance). Returns the files removed and added.

        Why not delta-rs' compaction: a file holding rows of several months is rewritten by
        every edit of any of them, and the last month's edits would rewrite the mixed files
        of earlier months (silver transactions' 1% last-month run rewrites 1.7M rows, not 10M,
        because each file holds one month)."""
        base = lake.table(path)
        if base is None or not lake.files_are_the_rows(base):  # a local table, plain files
            return {}
        months: dict[str | None, list[LoggedFile]] = {}
        for f in lake.logged_files(base):
            folder = re.search(rf"(?:^|/){CLUSTER}=([^/]+)/[^/]+$", f.local)
            months.setdefault(folder.group(1) if folder else None, []).append(f)
        redo = months.pop(None, [])
        small = size_bytes(FILE_SIZE) // 2
        for files in months.values():
            if len(smalls := [f for f in files if f.size < small]) > 1:
                redo += smalls
        if not redo:
            return {}
        schema = lake_schema(pa.schema(base.schema().to_arrow()))
        self._read_parquet("compact_rows", [f.local for f in redo], schema)
        try:
            rows = "SELECT * FROM compact_rows"
            written = self._copy(
                rows, lake.uri(path), self.columns("compact_rows"), schema, [], cluster_by
            )
            lake.commit_files(
                path,
                written,
                schema=schema,
                metadata=lake.maintenance_metadata(path),
                remove=redo,
                base=base,
                data_change=False,
            )
        finally:
            self.execute("DROP VIEW IF EXISTS compact_rows")
        return {"files_compacted": len(redo), "files_added": len(written)}

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
        lake.merge_scd2(
            path, self._rows(query, params), key=key, columns=columns, metadata=metadata
        )

    def update_columns(
        self,
        lake: Lake,
        path: str,
        query: str,
        *,
        on: list[str],
        metadata: dict[str, Any] | None = None,
    ) -> None:
        lake.update_columns(path, self._rows(query, None), on=on, metadata=metadata)

    def close(self) -> None:
        if self.catalog is not None:
            try:
                self.con.execute("USE memory")
                self.con.execute(f"DETACH {self.catalog}")
            except duckdb.Error:  # a result still streaming: the catalog goes with the database
                pass
            self.catalog = None
        self.con.close()


FILE_SIZE = "128MiB"  # Parquet files of about this size, as delta-rs writes them
# DuckDB types its Parquet writer writes as the lake types them (timestamps cast to UTC
# first); a result with any other type (HUGEINT, unsigned, UUID, STRUCT …) goes through
# delta-rs' writer
_COPYABLE = re.compile(
    r"(VARCHAR|BIGINT|INTEGER|SMALLINT|TINYINT|DOUBLE|FLOAT|BOOLEAN|DATE|DECIMAL\(\d+,\d+\))"
    r"(\[\])*|TIMESTAMP( WITH TIME ZONE|_NS|_MS|_S)?"
)


_UNITS = {"KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_UNITS |= {"KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40, "B": 1}


def size_bytes(text: str) -> int:
    """``4GB`` (``run.memory_limit``'s spelling, with DuckDB's units: GB = 10^9 bytes, GiB =
    2^30) as bytes."""
    found = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]i?B|B)\s*", text)
    if found is None:
        raise ValueError(f"not a size: {text!r}")
    return int(float(found[1]) * _UNITS[found[2]])


def _sub(query: str) -> str:
    """``query`` as a subquery (on lines of its own: it may end in a ``--`` comment)."""
    return f"(\n{query}\n)"


def _copyable(types: dict[str, str]) -> bool:
    return all(_COPYABLE.fullmatch(t) for t in types.values())


def _same_schema(table: DeltaTable | None, schema: pa.Schema) -> bool:
    """Whether files of ``schema`` can be committed to ``table`` as they are: no table yet,
    or one of the same columns and types (schema changes go through delta-rs' writer)."""
    if table is None:
        return True
    mine = json.loads(Schema.from_arrow(schema).to_json())["fields"]
    theirs = json.loads(table.schema().to_json())["fields"]
    return [(f["name"], f["type"]) for f in mine] == [(f["name"], f["type"]) for f in theirs]


def _data_file(root: str, row: dict[str, Any], schema: pa.Schema, partitions: set[str]) -> DataFile:
    """A file DuckDB's ``COPY … RETURN_STATS`` wrote, with Delta statistics: its row count
    and the null count of each top-level column.

    No minimum and maximum: delta-rs' pyarrow dataset reads a column missing from them as
    a NULL bound and prunes every file on a filter over it, so bounds would have to be
    exact for every column (decimals, timestamps rounded outward to milliseconds, floats
    with NaN); the engines prune row groups by the Parquet statistics instead."""
    columns, keys = row["column_statistics"] or {}, row["partition_keys"] or {}
    nulls = {
        f.name: int(col["null_count"])
        for f in schema
        if f.name not in partitions
        and (col := columns.get(quote_ident(f.name))) is not None
        and "null_count" in col
    }
    stats = {"numRecords": int(row["count"]), "nullCount": nulls}
    relative = os.path.relpath(row["filename"], root).replace(os.sep, "/")
    values = {k: (None if v is None else str(v)) for k, v in keys.items() if k != CLUSTER}
    return DataFile(relative, int(row["file_size_bytes"]), values, json.dumps(stats))


SPILL_PREFIX = "rcmlake-duckdb-"


def spill_folder(parent: str | None = None) -> str:
    """A new spill folder named by this process's id, after removing those of processes
    that are gone: a killed run (SIGKILL, OOM killer) cannot remove its own, and a
    claims build at scale 30 spilled tens of GB."""
    parent = parent or tempfile.gettempdir()
    with os.scandir(parent) as entries:
        for entry in entries:
            pid = entry.name[len(SPILL_PREFIX) :].split("-", 1)[0]
            if entry.name.startswith(SPILL_PREFIX) and pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(entry.path, ignore_errors=True)
    return tempfile.mkdtemp(prefix=f"{SPILL_PREFIX}{os.getpid()}-", dir=parent)


def _alive(pid: int) -> bool:
    if os.name == "nt":  # signal 0 is CTRL_C_EVENT there: never probe, keep the folder
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


class DuckDBEngine(Engine):
    """In-process DuckDB: one database for the engine's lifetime, with its memory limit,
    threads and spill directory, and each session a connection to it with an in-memory
    catalog of its own.

    Why shared: opening a DuckDB database costs about 20 ms, and a run opens a session per
    table and layer step (hundreds on a small lake, where it was a sixth of the run); a
    connection and a catalog cost under a millisecond. The memory limit then bounds the
    engine as a whole, not each of the sessions bronze runs at once.
    """

    name = "duckdb"

    def __init__(self, memory_limit: str | None = None, threads: int | None = None):
        self.memory_limit = memory_limit
        self.threads = threads
        self._outside = 0  # bytes held outside the engine now (``outside``)
        self._holds = 0  # works running outside the engine now, each on a core of its own
        self._threads = 0  # the database's threads with nothing outside (read when it opens)
        self._shifting = threading.Lock()
        self.spill_dir = spill_folder()
        self._db: duckdb.DuckDBPyConnection | None = None
        self._lock = threading.Lock()
        self._catalogs = itertools.count(1)
        # the spill folder goes with the engine (or the process), whatever ends it
        weakref.finalize(self, shutil.rmtree, self.spill_dir, ignore_errors=True)

    def _config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "temp_directory": self.spill_dir,
            # a partitioned write (gold facts by service month) flushes each partition's rows
            # at one row group, not at 524,288: rewriting a 10M-row fact took 1.4 GB more
            # than before the write at the default, 0.45 GB at this, and ran faster (8.4 s ->
            # 5.6 s with one buffered row group)
            "partitioned_write_flush_threshold": BATCH_ROWS,
            "write_buffer_row_group_count": 1,
        }
        if self.memory_limit:
            # past the limit, temp tables spill instead of failing; insertion order is not needed
            config |= {"memory_limit": self._limit(), "preserve_insertion_order": False}
        if self.threads:
            config["threads"] = int(self.threads)
        return config

    def _limit(self) -> str:
        """The engine's limit now: ``memory_limit`` less what is held ``outside``, but never
        under a quarter of it (a query needs room to run; past the limit it spills)."""
        whole = size_bytes(self.memory_limit or "0B")
        return f"{max(whole - self._outside, whole // 4)}B"

    @contextmanager
    def outside(self, nbytes: int) -> Iterator[None]:
        """Make room for work that runs outside the engine meanwhile (an 835 parsed in
        Python, on a thread of its own, holding ``nbytes``).

        Memory: the database's limit drops by ``nbytes``, and DuckDB evicts (spills) what is
        over the new limit at once, so the EMR loads running beside an 835 parse make room
        for it instead of adding to it (bronze peaked at 6.2-6.9 GB with a 4 GB limit and a
        parse of up to 2.8 GB). Best effort: memory a running query holds pinned cannot be
        evicted, and then the limit stays as it was.

        A core: the database runs on one thread fewer (never under one). Bronze's 835 feed
        is one chain of files, parsed one at a time, and the longest task of the layer; on
        two cores, the EMR loads' two DuckDB threads beside it took most of the CPU from it,
        and the layer ended on it alone (scale 10: 124.6-131.3 s). Yielding a thread while
        it is held, both chains end together (116.8-121.8 s)."""
        self._shift(max(nbytes, 0), 1)
        try:
            yield
        finally:
            self._shift(-max(nbytes, 0), -1)

    def _settings(self) -> dict[str, str]:
        """The limit and threads for what is held outside now (``outside``)."""
        settings = {"threads": str(max(1, self._threads - self._holds))} if self._threads else {}
        return settings | ({"memory_limit": self._limit()} if self.memory_limit else {})

    def _shift(self, nbytes: int, holds: int) -> None:
        # one shift at a time, counted and set together: two parses' holds set in the
        # wrong order would leave the higher limit in place
        with self._shifting:
            self._outside += nbytes
            self._holds += holds
            with self._lock:
                if self._db is None:  # opened later, with the settings of that moment
                    return
                con = self._db.cursor()
            try:
                for name, value in self._settings().items():
                    # pinned memory over a new limit: the old one stays
                    with suppress(duckdb.Error):
                        con.execute(f"SET {name} = '{value}'")
            finally:
                con.close()

    def _database(self) -> duckdb.DuckDBPyConnection:
        with self._lock:
            if self._db is None:
                self._db = duckdb.connect(":memory:", config=self._config())
                # DuckDB's own count when not configured: the cores it may use (cgroups too)
                self._threads = int(
                    self._db.execute("SELECT current_setting('threads')").fetchall()[0][0]
                )
                if self._holds:  # opened during a hold: with the settings of that moment
                    self._db.execute(f"SET threads = {self._settings()['threads']}")
            return self._db

    def session(self, *, private: bool = False) -> DuckDBSession:
        """A session on the engine's database; ``private``: a database of its own, for a
        session that locks itself down (the analyst's), which a shared one must not."""
        if private:
            return DuckDBSession(connect(config=self._config()), engine=self)
        con = self._database().cursor()
        catalog = f"session_{next(self._catalogs)}"
        try:
            con.execute(f"ATTACH ':memory:' AS {catalog}")
            con.execute(f"USE {catalog}")
            _prepare(con)
        except duckdb.Error as exc:
            con.close()
            raise _translated(exc) from None
        return DuckDBSession(con, catalog, self)
