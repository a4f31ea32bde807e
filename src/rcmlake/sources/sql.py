"""EMR databases read as Arrow batches through connectorx.

Connectivity is checked through SQLAlchemy, whose ``OperationalError`` is
the driver's own "cannot connect" class: that, not message text, marks a
source as transiently unavailable. Queries run in connectorx, which streams
Arrow record batches without Python row objects.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

import connectorx as cx
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from rcmlake.config.models import SourceConfig, TableConfig
from rcmlake.engines.base import quote_ident
from rcmlake.errors import (
    SchemaDriftError,
    SourceAuthError,
    SourceError,
    SourceNotFound,
    SourceUnavailable,
)
from rcmlake.storage.lake_types import plain_strings

_SA_DRIVERS = {
    "sqlite": "sqlite",
    "mysql": "mysql+pymysql",
    "postgres": "postgresql+psycopg",
    "mssql": "mssql+pymssql",
}
_MYSQL_AUTH = {1044, 1045, 1698}  # access denied (to the database, for the user, by plugin)
_MYSQL_UNKNOWN_DB = 1049
_CX_SCHEMES = {"sqlite": "sqlite", "mysql": "mysql", "postgres": "postgresql", "mssql": "mssql"}


class SqlSource:
    """One hospital's EMR database.

    Example::

        src = SqlSource("hospital_a", config.sources["hospital_a"], base_dir)
        src.check()
        reader = src.extract(table_config, since="2025-06-30")
    """

    def __init__(self, name: str, config: SourceConfig, base_dir: Path):
        self.name = name
        self.config = config
        self.base_dir = base_dir

    def _url(self) -> sa.URL:
        url = make_url(self.config.resolved_url())
        if self.config.type == "sqlite" and url.database and not Path(url.database).is_absolute():
            url = url.set(database=str((self.base_dir / url.database).resolve()))
        return url

    def sqlalchemy_url(self) -> sa.URL:
        return self._url().set(drivername=_SA_DRIVERS[self.config.type])

    def connectorx_url(self) -> str:
        url = self._url().set(drivername=_CX_SCHEMES[self.config.type])
        if self.config.type == "sqlite":
            return f"sqlite://{url.database}"
        return url.render_as_string(hide_password=False)

    def check(self) -> dict[str, list[str]]:
        """Connect and list each configured table's columns; raise if unreachable."""
        if self.config.type == "sqlite":
            path = Path(self._url().database or "")
            if not path.exists():
                raise SourceUnavailable(f"{self.name}: SQLite file {path} does not exist")
        engine = sa.create_engine(self.sqlalchemy_url())
        try:
            insp = sa.inspect(engine)
            out = {}
            for table in self.config.tables:
                schema, _, bare = table.name.rpartition(".")
                try:
                    out[table.name] = [
                        c["name"] for c in insp.get_columns(bare, schema=schema or None)
                    ]
                except sa.exc.NoSuchTableError:
                    out[table.name] = []
            return out
        except sa.exc.OperationalError as exc:
            raise self._connect_error(exc.orig) from None
        except sa.exc.SQLAlchemyError as exc:
            raise SourceError(f"{self.name}: {type(exc).__name__}") from None
        finally:
            engine.dispose()

    def _connect_error(self, orig: BaseException | None) -> SourceError:
        """The driver's refusal as what it means: only an unreachable server is transient.

        MySQL/MariaDB give error codes; libpq gives none for a refused connection, but a
        server that answered says ``FATAL:`` — then it is the role, password or database.
        """
        host = self._url().host
        if host:
            try:
                socket.getaddrinfo(host, None)
            except socket.gaierror:
                return SourceNotFound(f"{self.name}: unknown host {host}")
        code = orig.args[0] if orig is not None and orig.args else None
        pgconn = getattr(orig, "pgconn", None)
        said = (getattr(pgconn, "error_message", b"") or b"").decode("utf-8", "replace")
        fatal = said.partition("FATAL:")[2]
        if code == _MYSQL_UNKNOWN_DB or re.search(r"database .* does not exist", fatal):
            return SourceNotFound(f"{self.name}: database {self._url().database} does not exist")
        if code in _MYSQL_AUTH or fatal:  # password, role, pg_hba.conf: the server said no
            return SourceAuthError(f"{self.name}: authentication failed for the configured user")
        return SourceUnavailable(f"{self.name}: cannot connect ({type(orig).__name__})")

    def quote(self, ident: str) -> str:
        """``ident`` as a quoted identifier of this dialect, its quote character doubled, so
        a name is only ever a name (``patients" WHERE …`` cannot read another table)."""
        if self.config.type == "mysql":
            return "`" + ident.replace("`", "``") + "`"
        if self.config.type == "mssql":
            return "[" + ident.replace("]", "]]") + "]"
        return quote_ident(ident)

    def query(self, table: TableConfig, since: str | None, part: int | None = None) -> str:
        """The extraction query; ``>=`` on the last committed watermark (ties are de-duplicated
        later); with ``part``, only the rows of that part of ``table.partitions``."""
        name = ".".join(self.quote(p) for p in table.name.split("."))
        sql = f"SELECT * FROM {name}"
        where = []
        if table.load_type == "incremental" and since is not None:
            assert table.watermark
            literal = since.replace("'", "''")
            wm = self.quote(table.watermark)
            # NULL watermarks are re-read each time (they are few) so such rows are never lost.
            where.append(f"({wm} >= '{literal}' OR {wm} IS NULL)")
        if part is not None:
            where.append(f"{self._bucket(table)} = {part}")
        return sql + (f" WHERE {' AND '.join(where)}" if where else "")

    def _bucket(self, table: TableConfig) -> str:
        """The part (0 … partitions − 1) of a row: a hash of its primary key, in the server's
        own functions. A NULL key hashes as the empty text, so every row is in one part."""
        n = table.partitions
        keys = [self.quote(k) for k in table.primary_key]
        if self.config.type == "mysql":
            text = f"CONCAT_WS('|', {', '.join(keys)})"
            return f"COALESCE(MOD(CRC32({text}), {n}), 0)"
        if self.config.type == "postgres":
            text = f"concat_ws('|', {', '.join(f'{k}::text' for k in keys)})"
            return f"COALESCE(mod(abs(hashtext({text})::bigint), {n}), 0)"
        if self.config.type == "mssql":
            return f"COALESCE(ABS(CAST(CHECKSUM({', '.join(keys)}) AS BIGINT)) % {n}, 0)"
        raise SourceError(f"{self.name}.{table.name}: a {self.config.type} source is read whole")

    def extract(
        self, table: TableConfig, since: str | None, columns: list[str], batch_rows: int
    ) -> pa.RecordBatchReader:
        """Stream the table (or its rows at or above ``since``) as Arrow batches."""
        if not columns:
            raise SchemaDriftError(f"{self.name}.{table.name}: table not found in the source")
        if table.watermark and table.watermark not in columns:
            raise SchemaDriftError(
                f"{self.name}.{table.name}: watermark column {table.watermark} not found; columns: {columns}"
            )
        if missing := [c for c in table.primary_key if c not in columns]:
            raise SchemaDriftError(
                f"{self.name}.{table.name}: primary_key column(s) {missing} not found in the source"
            )
        # one query, or one per part: connectorx runs a list of queries at once, each on
        # its own connection, and streams their batches as they come
        queries: str | list[str] = (
            self.query(table, since)
            if table.partitions == 1
            else [self.query(table, since, part) for part in range(table.partitions)]
        )
        try:
            reader = cx.read_sql(
                self.connectorx_url(),
                queries,
                return_type="arrow_stream",
                batch_size=batch_rows,
            )
        except Exception as exc:  # connectorx raises bare RuntimeError/PanicException
            raise SourceError(
                f"{self.name}.{table.name}: extraction failed ({type(exc).__name__})"
            ) from None
        return plain_strings(reader)
