"""Which columns of which relations each gold model reads: what an incremental build compares.

Gold is rebuilt only where its inputs changed (``layers/gold.py``). "Changed" has to mean
changed *in the columns the model reads*: a 1% edit of transactions' paid amounts moves
``silver.transactions`` but not one column that ``fact_claim`` takes from it, so
``fact_claim`` (and the remittance facts built on it) need not be rebuilt. The columns are
found, not declared: every model is planned by sqlglot against the real schemas (each
silver and gold model run on empty typed input in DuckDB), its unused projections pushed
down, and each column traced to the lake table it is read from. A declared list would
drift from the SQL; a lineage that missed a column would serve stale gold, so where a
column cannot be traced to one table it counts for every table of its scope.
"""

from __future__ import annotations

from datetime import date
from functools import cache
from typing import Any

import pyarrow as pa
import sqlglot
from sqlglot import exp
from sqlglot.optimizer.pushdown_projections import pushdown_projections
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import traverse_scope
from sqlglot.schema import MappingSchema

PARAMS = "params"


def gold_params(cfg: Any, as_of: date) -> pa.Table:
    """The one-row ``params`` relation gold models read (as-of date and the gold config)."""
    return pa.table(
        {
            "as_of_date": [as_of],
            "aging_basis": [cfg.aging_basis],
            "fiscal_year_start_month": [cfg.fiscal_year_start_month],
            "remittance_wait_days": [cfg.remittance_wait_days],
            "underpayment_threshold": [cfg.underpayment_threshold],
        }
    )


@cache
def schemas() -> dict[str, dict[str, dict[str, str]]]:
    """``{"silver": {entity: {column: type}}, "gold": {model: …}, "main": {"params": …}}``,
    as the models build them on empty input."""
    from rcmlake.config.models import GoldConfig
    from rcmlake.engines.duckdb import connect
    from rcmlake.transforms import models
    from rcmlake.transforms.check import _dry_run

    con = connect()
    try:
        _dry_run(con)
        con.register("_params", gold_params(GoldConfig(), date(2000, 1, 1)))
        con.execute(f"CREATE TABLE {PARAMS} AS SELECT * FROM _params")
        con.execute("CREATE SCHEMA IF NOT EXISTS gold")
        for m in models("gold"):
            con.execute(f"CREATE TABLE gold.{m.name} AS {m.sql}")

        def described(relation: str) -> dict[str, str]:
            return {r[0]: r[1] for r in con.execute(f"DESCRIBE {relation}").fetchall()}

        return {
            "silver": {m.name: described(f"silver.{m.name}") for m in models("silver")},
            "gold": {m.name: described(f"gold.{m.name}") for m in models("gold")},
            "main": {PARAMS: described(PARAMS)},
        }
    finally:
        con.close()


def columns_read(sql: str) -> dict[str, frozenset[str]]:
    """Relation (``silver.claims``, ``gold.dim_patient``, ``params``) → the columns ``sql``
    reads from it, anywhere: projections, joins, filters, windows."""
    schema: dict[str, Any] = schemas()
    tree = qualify(
        sqlglot.parse_one(sql, read="duckdb"),
        schema=MappingSchema(schema, dialect="duckdb"),
        dialect="duckdb",
        db="main",
        validate_qualify_columns=False,
    )
    tree = pushdown_projections(tree)
    read: dict[str, set[str]] = {}
    for scope in traverse_scope(tree):
        tables = {
            alias: _relation(src)
            for alias, src in scope.sources.items()
            if isinstance(src, exp.Table)
        }
        for name in tables.values():
            read.setdefault(name, set())
        for col in scope.columns:
            if col.table in tables:
                read[tables[col.table]].add(col.name)
            elif col.table not in scope.sources:  # not traced: it may come from any table here
                for name in tables.values():
                    read[name].add(col.name)
        projections = (
            scope.expression.expressions if isinstance(scope.expression, exp.Select) else []
        )
        if any(p.is_star for p in projections):  # a * qualify could not expand: every column
            for name in tables.values():
                read[name] |= set(_table_columns(schema, name))
    return {name: frozenset(cols) for name, cols in read.items()}


def _relation(table: exp.Table) -> str:
    return table.name if table.db in ("", "main") else f"{table.db}.{table.name}"


def _table_columns(schema: dict[str, dict[str, dict[str, str]]], name: str) -> list[str]:
    db, _, table = name.rpartition(".")
    return list(schema.get(db or "main", {}).get(table, {}))


@cache
def gold_lineage() -> dict[str, dict[str, frozenset[str]]]:
    """Each gold model → ``columns_read`` of its SQL (package data: planned once per process)."""
    from rcmlake.transforms import models

    return {m.name: columns_read(m.sql) for m in models("gold")}
