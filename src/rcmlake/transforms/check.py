"""Config SQL checked against the models before any data arrives.

Rule predicates and mapping expressions are SQL written by people: a typo would
otherwise pass the config load and fail a run weeks later, when the first row
reaches that entity. Here each silver model runs on empty, typed input in DuckDB,
in order (so ``silver.<entity>`` lookups resolve), and every predicate is bound
against the model's real output columns. Nothing is read from the lake.
"""

from __future__ import annotations

import re
from functools import cache

import duckdb
import pyarrow as pa

from rcmlake.config.models import ProjectConfig
from rcmlake.engines.base import quote_ident
from rcmlake.errors import ConfigError

BARE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_ ]*")
SQL_TYPES = {
    "text": "VARCHAR",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
    "decimal": "DECIMAL(18, 2)",
    "bigint": "BIGINT",
}


def check_sql(config: ProjectConfig) -> None:
    """Raise ConfigError (naming the rule or mapping, and the engine's reason) when a rule
    predicate or a mapping expression does not parse, or a predicate names a column the
    entity does not have."""
    from rcmlake.engines.duckdb import connect
    from rcmlake.transforms import effective_rules, mapping, models

    sources = {*config.sources, *(ds for f in config.files.values() for ds in f.patterns)}
    for m in models("silver"):
        for ds in sorted(sources):
            for col, expr in mapping(config, ds, m.name).items():
                _parses(expr, f"silver.mappings.{ds}.{m.name}.{col}")
    con = connect()
    try:
        _dry_run(con)
        for m in models("silver"):
            for r in effective_rules(config, m.name):
                try:
                    con.execute(f"SELECT ({r.rule.predicate}) FROM silver.{m.name} LIMIT 0")
                except duckdb.Error as exc:
                    config_rules = {x.name for x in config.silver.rules}
                    where = "silver.rules" if r.name in config_rules else "silver.yml"
                    raise ConfigError(
                        f"rule {r.name!r} on {m.name}: {_reason(exc)}", field=where
                    ) from None
    finally:
        con.close()


@cache
def empty_silver() -> dict[str, pa.Schema]:
    """Each silver entity's schema as its model builds it (columns the SQL derives included):
    an entity with no data yet reads as an empty table of this schema."""
    from rcmlake.engines.duckdb import connect
    from rcmlake.transforms import models

    con = connect()
    try:
        _dry_run(con)
        return {
            m.name: con.sql(f"SELECT * FROM silver.{m.name}").to_arrow_table().schema
            for m in models("silver")
        }
    finally:
        con.close()


def _dry_run(con: duckdb.DuckDBPyConnection) -> None:
    """Run every silver model, in order, on empty typed input into ``silver.<entity>``, with
    the columns the runner adds (quality, history)."""
    from rcmlake.transforms import cdm_types, models

    con.execute("CREATE SCHEMA IF NOT EXISTS silver")
    for m in models("silver"):
        types = cdm_types(m)
        cols = [
            f"CAST(NULL AS {sql_type(c, types.get(c, 'text'))}) AS {quote_ident(c)}"
            for c in m.spec.get("columns", {})
        ]
        con.execute(
            "CREATE OR REPLACE TEMP VIEW stage AS SELECT CAST(NULL AS VARCHAR) AS datasource, "
            f"{', '.join(cols)}, CAST([] AS VARCHAR[]) AS cast_errors, "
            "CAST(NULL AS VARCHAR) AS _batch_id, CAST(NULL AS TIMESTAMPTZ) AS _ingested_at, "
            "CAST(NULL AS VARCHAR) AS _row_hash WHERE false"
        )
        con.execute(f"CREATE OR REPLACE TABLE silver.{m.name} AS {m.sql}")
        for col, typ in RUNNER_COLUMNS.items():
            con.execute(f"ALTER TABLE silver.{m.name} ADD COLUMN IF NOT EXISTS {col} {typ}")


RUNNER_COLUMNS = {
    "dq_failures": "VARCHAR[]",
    "dq_warnings": "VARCHAR[]",
    "is_quarantined": "BOOLEAN",
    "effective_from": "TIMESTAMP",
    "effective_to": "TIMESTAMP",
    "is_current": "BOOLEAN",
    "_updated_at": "TIMESTAMPTZ",
}


def sql_type(column: str, cdm: str) -> str:
    """The SQL type of a CDM column typed ``cdm`` (``types:`` in silver.yml)."""
    if cdm == "raw":
        return "VARCHAR[]" if column == "cast_errors" else "VARCHAR"
    return SQL_TYPES[cdm]


def _parses(expr: str, field: str) -> None:
    if BARE_NAME.fullmatch(expr):  # a column name (spaces allowed), resolved against bronze
        return
    try:
        duckdb.extract_statements(f"SELECT {expr}")
    except duckdb.Error as exc:
        raise ConfigError(
            f"mapping {expr!r} is not valid SQL: {_reason(exc)}", field=field
        ) from None


def _reason(exc: duckdb.Error) -> str:
    """The engine's one-line reason (config SQL over empty data: no values to hide)."""
    return str(exc).splitlines()[0]
