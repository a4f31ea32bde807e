"""Write synthetic EMR tables to SQLite, MySQL/MariaDB or PostgreSQL, and files to landing.

DDL goes through SQLAlchemy (dialect-aware quoting and types); rows go
through each driver's bulk path (sqlite3 ``executemany``, PostgreSQL
``COPY``, PyMySQL's multi-row ``executemany``) straight from Arrow columns.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from rcmlake.errors import SourceUnavailable

SQL_TYPES: dict[pa.DataType, Any] = {
    pa.string(): sa.String(100),
    pa.date32(): sa.Date(),
    pa.float64(): sa.Float(),
    pa.int64(): sa.BigInteger(),
}
KEYS = {
    "departments": "DeptID",
    "providers": "ProviderID",
    "patients": None,
    "encounters": "EncounterID",
    "transactions": "TransactionID",
}


def database_url(target: str, datasource: str) -> str:
    """The SQLAlchemy URL of one hospital's database under ``target``.

    ``target`` is a folder (SQLite files) or a server URL whose database part
    may hold ``{datasource}``; without one, ``<datasource>_db`` is used.
    """
    if "://" not in target:
        return f"sqlite:///{Path(target).resolve() / f'{datasource}.db'}"
    url = make_url(target.replace("{datasource}", datasource))
    if not url.database:
        url = url.set(database=f"{datasource}_db")
    driver = {
        "mysql": "mysql+pymysql",
        "mariadb": "mysql+pymysql",
        "postgresql": "postgresql+psycopg",
        "postgres": "postgresql+psycopg",
    }.get(url.drivername, url.drivername)
    return url.set(drivername=driver).render_as_string(hide_password=False)


def engine_for(url: str, *, create: bool = False) -> sa.Engine:
    """An engine on ``url``; ``create`` makes the database first when it is missing."""
    u = make_url(url)
    if create and u.get_backend_name() in ("mysql", "postgresql"):
        server = u.set(
            database="postgres" if u.get_backend_name() == "postgresql" else "information_schema"
        )
        eng = sa.create_engine(server, isolation_level="AUTOCOMMIT")
        try:
            with eng.connect() as con:
                quoted = eng.dialect.identifier_preparer.quote(u.database or "")
                exists = con.execute(
                    sa.text("SELECT 1 FROM pg_database WHERE datname = :d")
                    if u.get_backend_name() == "postgresql"
                    else sa.text(
                        "SELECT 1 FROM information_schema.schemata WHERE schema_name = :d"
                    ),
                    {"d": u.database},
                ).first()
                if not exists:
                    con.execute(sa.text(f"CREATE DATABASE {quoted}"))
        except sa.exc.OperationalError as exc:
            raise SourceUnavailable(f"cannot reach {u.render_as_string()}: {exc.orig}") from None
        finally:
            eng.dispose()
    if u.get_backend_name() == "sqlite":
        Path(u.database or "").parent.mkdir(parents=True, exist_ok=True)
    return sa.create_engine(u)


def replace_tables(engine: sa.Engine, tables: dict[str, pa.Table]) -> None:
    """Drop and re-create each table, then bulk load its rows."""
    meta = sa.MetaData()
    defs = {
        name: sa.Table(name, meta, *(sa.Column(f.name, SQL_TYPES[f.type]) for f in t.schema))
        for name, t in tables.items()
    }
    meta.drop_all(engine)
    meta.create_all(engine)
    for name, table in tables.items():
        _bulk_insert(engine, defs[name], table)


def upsert_rows(engine: sa.Engine, name: str, rows: pa.Table, key: str) -> None:
    """Replace rows by key (delete then insert, in one transaction)."""
    if rows.num_rows == 0:
        return
    meta = sa.MetaData()
    table = sa.Table(name, meta, autoload_with=engine)
    ids = rows[key].drop_null().to_pylist()
    with engine.begin() as con:
        for chunk in _chunks(ids, 1000):
            con.execute(table.delete().where(table.c[key].in_(chunk)))
    _bulk_insert(engine, table, rows)


def _chunks(items: list[str], n: int) -> Iterator[list[str]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def _bulk_insert(engine: sa.Engine, table: sa.Table, data: pa.Table) -> None:
    backend = engine.dialect.name
    if backend == "sqlite":
        # ADBC ingests Arrow in C: ~1M rows/s, no Python row objects
        import adbc_driver_sqlite.dbapi as adbc

        with adbc.connect(engine.url.database) as con:
            con.cursor().adbc_ingest(table.name, data, mode="append")
            con.commit()
        return
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        if backend == "postgresql":
            cols = ", ".join(f'"{c}"' for c in data.column_names)
            buf = io.BytesIO()
            pacsv.write_csv(
                data, buf, pacsv.WriteOptions(include_header=False, quoting_style="needed")
            )
            with cur.copy(f'COPY "{table.name}" ({cols}) FROM STDIN WITH (FORMAT csv)') as copy:
                copy.write(buf.getvalue())
        else:
            quote = engine.dialect.identifier_preparer.quote
            mark = "%s"
            sql = (
                f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in data.column_names)}) "
                f"VALUES ({', '.join([mark] * data.num_columns)})"
            )
            for batch in data.to_batches(50_000):
                values = [c.to_pylist() for c in batch.columns]
                cur.executemany(sql, list(zip(*values, strict=True)))
        raw.commit()
    finally:
        raw.close()


def write_csv(table: pa.Table, path: Path, *, truncate_ids: list[str] | None = None) -> None:
    """Write a CSV as an insurer would; rows whose ClaimID is in ``truncate_ids`` lose their last fields."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    pacsv.write_csv(table, buf, pacsv.WriteOptions(quoting_style="needed"))
    text = buf.getvalue().decode()
    if truncate_ids:
        broken = set(truncate_ids)
        lines = text.splitlines()
        text = (
            "\n".join(
                ",".join(line.split(",")[:12])
                if line.split(",", 1)[0].strip('"') in broken
                else line
                for line in lines
            )
            + "\n"
        )
    path.write_text(text, encoding="utf-8")
