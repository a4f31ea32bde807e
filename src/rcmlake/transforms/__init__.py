"""SQL transforms as package data, and the YAML sidecars that describe them.

``silver/silver.yml`` and ``gold/gold.yml`` list the models in run order
with grain, key, history, column descriptions and tests; the ``.sql`` files
stay pure SQL over named relations. The runner, not the SQL, decides what
runs and where the rows go.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import yaml

from rcmlake.config.models import ProjectConfig, RuleConfig
from rcmlake.engines.base import quote_ident
from rcmlake.errors import ConfigError, SchemaDriftError
from rcmlake.transforms.check import BARE_NAME, check_sql

CODESETS = "codesets"


@dataclass(frozen=True)
class Model:
    """One transform: its SQL, where it reads, how it writes and what it checks."""

    name: str
    layer: str
    sql: str
    spec: dict[str, Any] = field(hash=False)

    @property
    def key(self) -> str:
        return str(self.spec.get("key", ""))

    @property
    def history(self) -> str:
        return str(self.spec.get("history", "full"))

    @property
    def source(self) -> str:
        return str(self.spec.get("source", self.name))

    def describe(self) -> dict[str, str]:
        return dict(self.spec.get("descriptions", {}))


@cache
def _sidecar(layer: str) -> dict[str, Any]:
    folder = resources.files("rcmlake.transforms").joinpath(layer)
    return yaml.safe_load(folder.joinpath(f"{layer}.yml").read_text(encoding="utf-8"))


@cache
def models(layer: str) -> tuple[Model, ...]:
    """The models of a layer in run order (package data: read once per process)."""
    folder = resources.files("rcmlake.transforms").joinpath(layer)
    out = []
    for name, spec in _sidecar(layer)["models"].items():
        sql_file = folder.joinpath(spec.get("sql", f"{name}.sql"))
        out.append(Model(name, layer, sql_file.read_text(encoding="utf-8"), spec))
    return tuple(out)


def model(layer: str, name: str) -> Model:
    found = {m.name: m for m in models(layer)}
    if name not in found:
        raise ConfigError(f"unknown {layer} model {name!r}; known: {', '.join(found)}")
    return found[name]


def mapping(config: ProjectConfig, datasource: str, entity: str) -> dict[str, str]:
    """CDM column -> source column/expression for one datasource: defaults, then config overrides."""
    base = dict(model("silver", entity).spec.get("columns", {}))
    override = config.silver.mappings.get(datasource, {}).get(entity, {})
    unknown = set(override) - set(base)
    if unknown:
        raise ConfigError(
            f"unknown CDM column(s) {sorted(unknown)} for {entity}; known: {', '.join(base)}",
            field=f"silver.mappings.{datasource}.{entity}",
        )
    return {**base, **override}


TYPES = ("text", "date", "timestamp", "decimal", "bigint", "raw")
VALUES_TYPED = "values_typed"


def cdm_types(m: Model) -> dict[str, str]:
    """CDM column -> CDM type for the columns a model types (``types:`` in silver.yml);
    every other mapped column is text."""
    return dict(m.spec.get("types", {}))


def tracked(config: ProjectConfig, entity: str) -> list[str]:
    return list(
        config.silver.tracked.get(entity) or model("silver", entity).spec.get("tracked", [])
    )


def rules(config: ProjectConfig, entity: str) -> list[RuleConfig]:
    """Default rules of the entity (from silver.yml) plus config rules, minus disabled ones."""
    defaults = _rules_of(model("silver", entity))
    known = {r.name for m in models("silver") for r in _rules_of(m)}
    unknown = set(config.silver.disable_rules) - known
    if unknown:
        raise ConfigError(
            f"unknown rule {sorted(unknown)[0]!r}; known: {', '.join(sorted(known))}",
            field="silver.disable_rules",
        )
    added = [r for r in config.silver.rules if r.table == entity]
    return [r for r in [*defaults, *added] if r.name not in config.silver.disable_rules]


@dataclass(frozen=True)
class EffectiveRule:
    """A rule with its severity per datasource (``by_datasource`` overrides ``severity``)."""

    rule: RuleConfig
    by_datasource: tuple[tuple[str, str], ...] = ()

    @property
    def name(self) -> str:
        return self.rule.name

    def severity_for(self, datasource: str) -> str:
        return dict(self.by_datasource).get(datasource, self.rule.severity)

    def severity_sql(self) -> str:
        """SQL for this rule's severity on a row, by its ``datasource`` column."""
        if not self.by_datasource:
            return f"'{self.rule.severity}'"
        whens = " ".join(f"WHEN '{ds}' THEN '{sev}'" for ds, sev in self.by_datasource)
        return f"CASE datasource {whens} ELSE '{self.rule.severity}' END"

    @property
    def depends_on_other_tables(self) -> bool:
        """Rules that look up another entity (foreign keys, code sets) can change their
        verdict when that entity changes, so quarantined rows are re-checked every run."""
        return "silver." in self.rule.predicate.lower()

    @property
    def key_lookup(self) -> str | None:
        """The silver entity whose keys are all this rule reads of it, or None: a predicate
        ``<expression> IN (SELECT <its key> FROM silver.<entity>)`` and nothing else.

        Such a verdict moves only when the entity gains or loses a key, never when its rows
        change; silver's re-check skips it after writes that kept every key."""
        return key_lookup(self.rule.predicate)


@cache
def key_lookup(predicate: str) -> str | None:
    """``EffectiveRule.key_lookup`` of ``predicate`` (parsed by sqlglot, DuckDB's dialect)."""
    import sqlglot
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(predicate, read="duckdb")
    except sqlglot.errors.ParseError:
        return None
    query = tree.args.get("query") if isinstance(tree, exp.In) else None
    if query is None or tree.this.find(exp.Select, exp.Table):  # the probe reads one row only
        return None
    select = query.this if isinstance(query, exp.Subquery) else query
    if not isinstance(select, exp.Select) or len(select.expressions) != 1:
        return None
    if any(select.args.get(k) for k in ("where", "joins", "group", "having", "limit", "qualify")):
        return None
    source = select.args.get("from_", select.args.get("from"))  # sqlglot 28+ names it from_
    table = source.this if isinstance(source, exp.From) else None
    column = select.expressions[0]
    if (
        not isinstance(table, exp.Table)
        or table.db != "silver"
        or not isinstance(column, exp.Column)
    ):
        return None
    entity = next((m for m in models("silver") if m.name == table.name), None)
    if entity is None or column.name != entity.key or column.table not in ("", table.alias_or_name):
        return None
    return entity.name


def effective_rules(config: ProjectConfig, entity: str) -> list[EffectiveRule]:
    """The entity's rules with the severities of ``silver.severity`` applied."""
    out = []
    for r in rules(config, entity):
        overrides = [o for o in config.silver.severity if o.rule == r.name]
        base, by_ds = r.severity, {}
        for o in overrides:
            if o.datasources:
                by_ds.update(dict.fromkeys(o.datasources, o.severity))
            else:
                base = o.severity
        out.append(
            EffectiveRule(r.model_copy(update={"severity": base}), tuple(sorted(by_ds.items())))
        )
    return out


def rules_fingerprint(rs: list[EffectiveRule]) -> str:
    """Changes when a rule is added, removed, re-written or changes severity."""
    text = json.dumps(
        [[r.name, r.rule.predicate, r.rule.severity, list(r.by_datasource)] for r in rs]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _rules_of(m: Model) -> list[RuleConfig]:
    typed = RuleConfig(
        name=VALUES_TYPED, table=m.name, predicate="array_length(cast_errors) = 0", severity="error"
    )
    return [typed, *(RuleConfig(table=m.name, **t) for t in m.spec.get("tests", []))]


def column_expr(value: str, columns: list[str], where: str) -> str:
    """A mapping value is a bronze column when it names one, otherwise a SQL expression.

    A bare name that is not a column is a mistake (or schema drift), never a silent NULL;
    map a column to ``NULL`` explicitly when a source does not have it.
    """
    if value in columns:
        return quote_ident(value)
    if value.upper() == "NULL":
        return "NULL"
    if BARE_NAME.fullmatch(value):
        raise SchemaDriftError(
            f"{where}: mapped column {value!r} is not in bronze; columns: {', '.join(columns)}"
        )
    return value


def validate(config: ProjectConfig) -> None:
    """Check the silver part of the config (mappings, tracked columns, rules) before any work."""
    entities = {m.name: m for m in models("silver")}
    for ds, per_entity in config.silver.mappings.items():
        for entity in per_entity:
            if entity not in entities:
                raise ConfigError(
                    f"unknown entity {entity!r}; known: {', '.join(entities)}",
                    field=f"silver.mappings.{ds}",
                )
            mapping(config, ds, entity)
    for entity, columns in config.silver.tracked.items():
        if entity not in entities or entities[entity].history != "scd2":
            scd2 = [n for n, m in entities.items() if m.history == "scd2"]
            raise ConfigError(
                f"{entity!r} is not an SCD2 entity; SCD2 entities: {', '.join(scd2)}",
                field="silver.tracked",
            )
        spec = entities[entity].spec
        known = set(spec.get("columns", {})) | set(spec.get("tracked", []))
        unknown = set(columns) - known
        if unknown:
            raise ConfigError(
                f"unknown column(s) {sorted(unknown)}; known: {', '.join(sorted(known))}",
                field=f"silver.tracked.{entity}",
            )
    for rule in config.silver.rules:
        if rule.table not in entities:
            raise ConfigError(
                f"rule {rule.name!r}: unknown table {rule.table!r}; known: {', '.join(entities)}",
                field="silver.rules",
            )
    for entity in entities:
        rules(config, entity)
    check_sql(config)
    known = {r.name for e in entities for r in rules(config, e)}
    sources = {*config.sources, *(ds for f in config.files.values() for ds in f.patterns), CODESETS}
    for i, o in enumerate(config.silver.severity):
        if o.rule not in known:
            raise ConfigError(
                f"unknown rule {o.rule!r}; known: {', '.join(sorted(known))}",
                field=f"silver.severity.{i}.rule",
            )
        unknown_ds = sorted(set(o.datasources) - sources)
        if unknown_ds:
            raise ConfigError(
                f"unknown datasource {unknown_ds[0]!r}; known: {', '.join(sorted(sources))}",
                field=f"silver.severity.{i}.datasources",
            )
