"""The quarantine report: rows and rule hits per table and rule, with example keys (never PHI
values), and the unknown members facts point at."""

from __future__ import annotations

from typing import Any

from rcmlake.config.models import ProjectConfig
from rcmlake.engines.base import EngineSession
from rcmlake.transforms import effective_rules, model

# fact -> the dimension keys it carries (-1 = no dimension row matched)
_ALL_KEYS = ("patient_sk", "provider_sk", "department_sk", "payer_sk", "procedure_sk")
FACT_KEYS = {  # fact_encounter has no diagnosis
    "fact_transaction": (*_ALL_KEYS, "diagnosis_sk"),
    "fact_claim": (*_ALL_KEYS, "diagnosis_sk"),
    "fact_encounter": _ALL_KEYS,
}


def _key(s: EngineSession, entity: str) -> tuple[str, str]:
    """The entity's key (silver.yml) and the filter of its current rows."""
    cols = s.sql(f"SELECT * FROM silver.{entity} LIMIT 0").column_names
    return model("silver", entity).key, "is_current" if "is_current" in cols else "true"


def quality_report(
    s: EngineSession, entities: list[str], examples: int = 3
) -> list[dict[str, Any]]:
    """One row per (table, datasource, rule, effective severity): the rows that fail the rule
    (a row failing three rules counts once under each) and a few example keys."""
    rows: list[dict[str, Any]] = []
    for entity in entities:
        key, current = _key(s, entity)
        if examples <= 0:  # counts only: no keys to rank
            key = "NULL"
        found = s.sql(f"""
            WITH f AS (
                SELECT datasource, {key} AS k, unnest(dq_failures) AS rule, 'error' AS severity
                FROM silver.{entity} WHERE is_quarantined AND {current}
                UNION ALL
                SELECT datasource, {key}, unnest(dq_warnings), 'warn' FROM silver.{entity} WHERE {current}
            ), r AS (
                SELECT *, row_number() OVER (PARTITION BY datasource, rule, severity ORDER BY k) AS rn FROM f
            )
            SELECT '{entity}' AS "table", datasource, rule, severity, count(*) AS rows,
                   string_agg(k, ', ' ORDER BY k) FILTER (WHERE rn <= {examples}) AS examples
            FROM r GROUP BY ALL ORDER BY datasource, severity, rule""")
        rows.extend(found.to_pylist())
    return rows


def quarantine_totals(s: EngineSession, entities: list[str]) -> list[dict[str, Any]]:
    """Per table and datasource: rows, quarantined rows, their rule hits, and warned rows."""
    rows: list[dict[str, Any]] = []
    for entity in entities:
        _, current = _key(s, entity)
        rows.extend(
            s.sql(f"""
            SELECT '{entity}' AS "table", datasource, count(*) AS rows,
                   count(*) FILTER (WHERE is_quarantined) AS quarantined_rows,
                   coalesce(sum(len(dq_failures)) FILTER (WHERE is_quarantined), 0) AS rule_hits,
                   count(*) FILTER (WHERE len(dq_warnings) > 0) AS warned_rows
            FROM silver.{entity} WHERE {current} GROUP BY ALL ORDER BY datasource""").to_pylist()
        )
    return rows


def unknown_members(s: EngineSession, tables: list[str]) -> list[dict[str, Any]]:
    """Per fact and dimension key: fact rows that found no dimension row (key -1)."""
    rows: list[dict[str, Any]] = []
    for fact, keys in FACT_KEYS.items():
        if f"gold.{fact}" not in tables:
            continue
        counts = ", ".join(f"count(*) FILTER (WHERE {k} = -1) AS {k}" for k in keys)
        for r in s.sql(
            f"SELECT datasource, count(*) AS n, {counts} FROM gold.{fact} GROUP BY 1 ORDER BY 1"
        ).to_pylist():
            rows.extend(
                {
                    "fact": fact,
                    "datasource": r["datasource"],
                    "key": k,
                    "unknown": r[k],
                    "of": r["n"],
                }
                for k in keys
                if r[k]
            )
    return rows


def every_rule(
    config: ProjectConfig, hits: list[dict[str, Any]], totals: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Every rule of every table and datasource with its effective severity and the rows that
    fail it (0 included), so a severity set in config can be checked here."""
    found = {(r["table"], r["datasource"], r["rule"], r["severity"]): r for r in hits}
    out = []
    for t in totals:
        for rule in effective_rules(config, t["table"]):
            severity = rule.severity_for(t["datasource"])
            hit = found.pop((t["table"], t["datasource"], rule.name, severity), None)
            out.append(
                {
                    "table": t["table"],
                    "datasource": t["datasource"],
                    "rule": rule.name,
                    "severity": severity,
                    "rows": hit["rows"] if hit else 0,
                    "examples": hit["examples"] if hit else None,
                }
            )
    out.extend(found.values())  # e.g. unique_key, or rules removed since the rows were checked
    return sorted(out, key=lambda r: (r["table"], r["datasource"], r["severity"], r["rule"]))
