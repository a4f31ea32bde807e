"""rcmlake's SQL, written once (DuckDB's dialect), as other engines run it.

Models and the runner's own SQL are written in DuckDB's dialect plus the
functions of ``engines/base.py`` (``surrogate_key``, ``version_key``,
``local_to_utc``). :func:`to_spark` parses that with sqlglot, rewrites what
sqlglot's Spark generator does not carry over, and generates Spark SQL:

- ``silver.x`` / ``gold.x`` become the session's temp views ``silver_x`` / ``gold_x``
  (Spark temp views have no schema);
- the rcmlake functions become their Spark expressions, computing the same values
  (the surrogate keys of both engines are equal for equal data);
- ``isodow`` (sqlglot maps it from Sunday-first ``dayofweek``, which is off by one day
  for every date) and ``monthname`` (Spark abbreviates it) are rewritten;
- ``try_strptime(v, fmt)`` becomes ``try_to_timestamp`` with the format translated;
- ``hash(a, b, …)`` (DuckDB's 64-bit row hash, which gold's change detection groups by)
  becomes ``xxhash64`` over each value and whether it is NULL (Spark's skips NULLs);
- ``QUALIFY`` becomes a filtered subquery, ``GROUP BY ALL`` the list it stands for;
- ``x IN (SELECT …)`` in a projection becomes a LEFT JOIN (Sail plans IN only in WHERE);
- ``a IS NOT DISTINCT FROM b`` is written ``a <=> b``: Spark's own operator, which Sail
  (like Spark) plans as a hash-join key; the spelled-out form made Sail join by nested
  loops (200k x 100k rows: 33.8 s against 0.01 s), and silver's dedup and newest-row
  joins use it;
- ``?`` parameters become literals, so one statement text reaches the server.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, ClassVar

import sqlglot
from sqlglot import exp, transforms
from sqlglot.dialects.spark import Spark

from rcmlake.errors import EngineError

SCHEMAS = ("silver", "gold")


def view_name(name: str) -> str:
    """The temp view a schema-qualified relation (``silver.claims``) is registered as."""
    return name.replace(".", "_")


def _spark(template: str, **args: exp.Expression) -> exp.Expression:
    """``template`` (Spark SQL) with ``{name}`` placeholders replaced by ``args``' trees."""
    tree = sqlglot.parse_one(template.format(**{k: f"__{k}" for k in args}), read="spark")

    def put(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Column) and node.name.startswith("__") and not node.table:
            return args[node.name[2:]].copy()
        return node

    return tree.transform(put)


# typed loosely: ``Spark.Generator`` names the class through an attribute, which mypy does
# not take as a base class, and importing it from its own module would tie rcmlake to the
# sqlglot releases that have that module
_SPARK_GENERATOR: Any = Spark.Generator


class SparkConnect(Spark):
    """Spark SQL as sqlglot writes it, but null-safe equality as ``<=>`` (see the module)."""

    class Generator(_SPARK_GENERATOR):
        TRANSFORMS: ClassVar[dict[Any, Callable[..., str]]] = {
            **_SPARK_GENERATOR.TRANSFORMS,
            exp.NullSafeEQ: lambda self, e: self.binary(e, "<=>"),
        }


SURROGATE = "CAST(conv(substr(md5(CAST({k} AS STRING)), 1, 15), 16, 10) AS BIGINT)"


def _rewrite(node: exp.Expression) -> exp.Expression:
    if isinstance(node, exp.Table) and node.db in SCHEMAS and not node.catalog:
        return exp.Table(
            this=exp.to_identifier(view_name(f"{node.db}.{node.name}")),
            alias=node.args.get("alias"),
        )
    if isinstance(node, exp.DayOfWeekIso):
        # from Sunday-first dayofweek (Sail's weekday gives Sunday as -1, not 6)
        return _spark("((dayofweek({d}) + 5) % 7 + 1)", d=node.this)
    if isinstance(node, exp.Monthname):
        return _spark("date_format({d}, 'MMMM')", d=node.this)
    if isinstance(node, exp.Anonymous):
        name = node.name.lower()
        args = node.expressions
        if name == "surrogate_key":
            return _spark(SURROGATE, k=args[0])
        if name == "version_key":
            text = _spark(
                "CAST({k} AS STRING) || '|' || CAST(unix_micros(CAST({t} AS TIMESTAMP)) AS STRING)",
                k=args[0],
                t=args[1],
            )
            return _spark(SURROGATE, k=text)
        if name == "hash":
            # DuckDB's 64-bit row hash; Spark's hash() has 32 bits, and its xxhash64 skips
            # NULL arguments, so each value is hashed with whether it is NULL
            flagged = [
                x
                for a in args
                for x in (a.copy(), exp.Anonymous(this="isnull", expressions=[a.copy()]))
            ]
            return exp.Anonymous(this="xxhash64", expressions=flagged)
        if name == "local_to_utc":
            return _spark("to_utc_timestamp({t}, {z})", t=args[0], z=args[1])
        if name == "try_strptime":
            # the format as Spark's own SQL literal ('%m/%d/%Y' -> 'M/d/yyyy')
            fmt = Spark().generator().format_time(exp.StrToTime(this=args[0], format=args[1]))
            return exp.Anonymous(
                this="try_to_timestamp",
                expressions=[args[0].copy(), sqlglot.parse_one(fmt or "''", read="spark")],
            )
    return node


def literal(value: Any) -> exp.Expression:
    """A Python parameter as a Spark SQL literal (timestamps as UTC)."""
    if value is None:
        return exp.Null()
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, int | float | Decimal):
        return exp.Literal.number(str(value))
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return _spark(f"TIMESTAMP '{value.isoformat(sep=' ')}'")
    if isinstance(value, date):
        return _spark(f"DATE '{value.isoformat()}'")
    return exp.Literal.string(str(value))


def _group_by_all(select: exp.Expression) -> exp.Expression:
    """``GROUP BY ALL`` as the list of the projections that aggregate nothing (constants
    left out: they group nothing, and Spark reads an integer literal as a column position)."""
    if not isinstance(select, exp.Select):
        return select
    group = select.args.get("group")
    if group is None or not group.args.get("all"):
        return select
    keys = [
        p.unalias().copy()
        for p in select.expressions
        if not p.find(exp.AggFunc, exp.Window) and p.find(exp.Column)
    ]
    select.set("group", exp.Group(expressions=keys))
    return select


def _in_subqueries_as_joins(select: exp.Expression) -> exp.Expression:
    """``x IN (SELECT y FROM r)`` in a projection (a quality rule evaluated per row) as a
    LEFT JOIN to ``r``'s distinct ``y``: Sail plans IN subqueries only in WHERE.

    Three-valued as IN is: NULL when ``x`` is NULL, or when nothing matched and ``y`` has a
    NULL; a star projection is qualified so the joined key does not join the row.
    """
    if not isinstance(select, exp.Select):
        return select
    found = [
        n
        for p in select.expressions
        for n in p.find_all(exp.In)
        if isinstance(n.args.get("query"), exp.Subquery)
        and isinstance(n.args["query"].this, exp.Select)
        and not n.args["query"].this.args.get("group")
        and not n.args["query"].this.args.get("distinct")
    ]
    if not found:
        return select
    sources = [select.args["from_"].this, *(j.this for j in select.args.get("joins") or [])]
    names = [src.alias_or_name for src in sources]
    select.set(
        "expressions",
        [
            exp.Column(this=exp.Star(), table=exp.to_identifier(names[0]))
            if isinstance(p, exp.Star) and len(names) == 1
            else p
            for p in select.expressions
        ],
    )
    for i, node in enumerate(found):
        inner = node.args["query"].this
        value = inner.selects[0].unalias()
        alias = f"_in{i}"
        keys = inner.copy()
        keys.set("expressions", [exp.alias_(value.copy(), "_k")])
        keys.set("distinct", exp.Distinct())
        nulls = inner.copy()
        nulls.set("expressions", [_spark("count(*) - count({v})", v=value)])
        select.join(
            exp.Subquery(this=keys, alias=exp.TableAlias(this=exp.to_identifier(alias))),
            on=exp.EQ(this=node.this.copy(), expression=exp.column("_k", table=alias)),
            join_type="left",
            copy=False,
        )
        node.replace(
            _spark(
                "CASE WHEN {x} IS NULL THEN NULL WHEN {k} IS NOT NULL THEN true "
                "WHEN {n} > 0 THEN NULL ELSE false END",
                x=node.this,
                k=exp.column("_k", table=alias),
                n=exp.Subquery(this=nulls),
            )
        )
    return select


@functools.lru_cache(maxsize=512)
def _translated(sql: str) -> tuple[str, ...]:
    try:
        trees = [t for t in sqlglot.parse(sql, read="duckdb") if t is not None]
    except sqlglot.errors.ParseError as exc:
        raise EngineError(f"cannot translate SQL to Spark: {str(exc).splitlines()[0]}") from None
    out = []
    for tree in trees:
        tree = tree.transform(_rewrite).transform(_group_by_all)
        tree = transforms.eliminate_qualify(tree.transform(_in_subqueries_as_joins))
        out.append(tree.sql(dialect=SparkConnect))
    return tuple(out)


def to_spark(sql: str, params: list[Any] | None = None) -> list[str]:
    """``sql`` (DuckDB dialect, ``;``-separated statements) as Spark SQL statements."""
    statements = list(_translated(sql))
    if not params:
        return statements
    values = iter(params)

    def bind(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Placeholder):
            return literal(next(values))
        return node

    return [
        sqlglot.parse_one(s, read="spark").transform(bind).sql(dialect=SparkConnect)
        for s in statements
    ]


def expression_to_spark(expression: str) -> str:
    """One SQL expression (a MERGE condition), DuckDB dialect, as Spark SQL."""
    tree = sqlglot.parse_one(expression, read="duckdb").transform(_rewrite)
    return tree.sql(dialect=SparkConnect)
