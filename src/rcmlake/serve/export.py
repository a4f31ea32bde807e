"""Exports for tools that cannot read Delta: a DuckDB file, or gold published into PostgreSQL."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import sqlalchemy as sa
from deltalake import DeltaTable
from sqlalchemy.engine import make_url

from rcmlake.engines.base import Engine
from rcmlake.errors import SourceUnavailable, StorageError
from rcmlake.serve.access import check_role, masked_query, masking_salt
from rcmlake.serve.catalog import lake_tables
from rcmlake.storage.delta import Lake


@contextmanager
def _masked(
    runner: Engine | None, qualified: str, dt: DeltaTable, salt: str | None
) -> Iterator[pa.RecordBatchReader | None]:
    """The table with the analyst masks applied, streamed (None: nothing to mask, or a
    privileged export); the engine session closes once the stream has been read."""
    query = None
    if salt is not None and runner is not None:
        layer, name = qualified.split(".")
        columns = [f.name for f in pa.schema(dt.schema().to_arrow())]
        query = masked_query(layer, name, "raw", columns, salt)
    if query is None or runner is None:
        yield None
        return
    with runner.session() as s:
        s.register("raw", dt.to_pyarrow_dataset())
        yield s.stream(query)


def to_duckdb(
    lake: Lake,
    out: Path,
    *,
    copy: bool = False,
    role: str = "analyst",
    runner: Engine | None = None,
) -> list[str]:
    """A DuckDB database with one view (or, with ``copy``, one table) per lake table.

    As ``analyst``, a table with direct identifiers is always a copy, masked (a view
    would point at the raw files).

    Views read the Parquet files of each silver table's current Delta version and of
    each gold table's version in the latest gold release; run the
    export again after a pipeline run (``rcmlake run`` does not rewrite it).
    """
    if not lake.is_local and not copy:
        raise StorageError("views over an object-store lake need credentials in DuckDB; use --copy")
    salt = masking_salt(lake) if check_role(role) == "analyst" else None
    out.unlink(missing_ok=True)
    con = duckdb.connect(str(out))
    names = []
    try:
        for qualified, (path, version) in lake_tables(lake).items():
            layer, name = qualified.split(".")
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {layer}")
            dt = lake.table(path, version)
            assert dt is not None
            with _masked(runner, qualified, dt, salt) as masked:
                # a view needs files (an empty table has none)
                copied = masked is not None or copy or not dt.file_uris()
                if copied:
                    con.register("src", masked or dt.to_pyarrow_dataset())
                    con.execute(f"CREATE TABLE {qualified} AS SELECT * FROM src")
                    con.unregister("src")
            if not copied:
                files = ", ".join(f"'{f}'" for f in dt.file_uris())
                parts = dt.metadata().partition_columns
                schema = pa.schema(dt.schema().to_arrow())
                types = {
                    f.name: _duck_type(pa.field(f.name, f.type).type)
                    for f in schema
                    if f.name in parts
                }
                hive = f", hive_partitioning = true, hive_types = {types}" if parts else ""
                cols = ", ".join(f'"{f.name}"' for f in schema)
                con.execute(
                    f"CREATE VIEW {qualified} AS SELECT {cols} FROM read_parquet([{files}]{hive})"
                )
            con.execute(f"CREATE VIEW main.{name} AS SELECT * FROM {qualified}")
            names.append(qualified)
    finally:
        con.close()
    return names


def _duck_type(t: pa.DataType) -> str:
    if pa.types.is_date(t):
        return "DATE"
    if pa.types.is_integer(t):
        return "BIGINT"
    return "VARCHAR"


def _sql_type(t: pa.DataType) -> sa.types.TypeEngine:
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return sa.Text()
    if pa.types.is_date(t):
        return sa.Date()
    if pa.types.is_timestamp(t):
        return sa.DateTime(timezone=True)
    if pa.types.is_decimal(t):
        return sa.Numeric(t.precision, t.scale)
    if pa.types.is_integer(t):
        return sa.BigInteger()
    if pa.types.is_floating(t):
        return sa.Float()
    if pa.types.is_boolean(t):
        return sa.Boolean()
    return sa.Text()


def _flatten_lists(table: pa.Table) -> pa.Table:
    """PostgreSQL gets list columns (dq_failures) as comma-separated text."""
    import pyarrow.compute as pc

    for i, f in enumerate(table.schema):
        if pa.types.is_list(f.type):
            table = table.set_column(i, f.name, pc.binary_join(table[f.name], ","))
    return table


def to_postgres(
    lake: Lake,
    url: str,
    *,
    schema: str = "rcmlake_gold",
    role: str = "analyst",
    runner: Engine | None = None,
) -> dict[str, int]:
    """Publish every gold table into ``schema``; each table is swapped in atomically (as
    ``analyst``, with direct identifiers masked)."""
    salt = masking_salt(lake) if check_role(role) == "analyst" else None
    u = make_url(url)
    u = u.set(drivername="postgresql+psycopg") if u.drivername in ("postgresql", "postgres") else u
    engine = sa.create_engine(u)
    counts = {}
    try:
        with engine.begin() as con:
            con.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        for qualified, (path, version) in lake_tables(lake).items():
            layer, name = qualified.split(".")
            if layer != "gold":
                continue
            dt = lake.table(path, version)
            assert dt is not None
            with _masked(runner, qualified, dt, salt) as masked:
                table = _flatten_lists(masked.read_all() if masked else dt.to_pyarrow_table())
            counts[name] = _publish(engine, schema, name, table)
    except sa.exc.OperationalError as exc:
        raise SourceUnavailable(f"cannot reach PostgreSQL ({type(exc.orig).__name__})") from None
    finally:
        engine.dispose()
    return counts


def _publish(engine: sa.Engine, schema: str, name: str, table: pa.Table) -> int:
    staging = f"{name}__rcmlake_new"
    meta = sa.MetaData(schema=schema)
    sa.Table(staging, meta, *(sa.Column(f.name, _sql_type(f.type)) for f in table.schema))
    meta.drop_all(engine)
    meta.create_all(engine)
    buf = io.BytesIO()
    pacsv.write_csv(table, buf, pacsv.WriteOptions(include_header=False))
    cols = ", ".join(f'"{c}"' for c in table.column_names)
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        with cur.copy(f'COPY "{schema}"."{staging}" ({cols}) FROM STDIN WITH (FORMAT csv)') as copy:
            copy.write(buf.getvalue())
        cur.execute(f'DROP TABLE IF EXISTS "{schema}"."{name}"')
        cur.execute(f'ALTER TABLE "{schema}"."{staging}" RENAME TO "{name}"')
        raw.commit()
    finally:
        raw.close()
    return table.num_rows
