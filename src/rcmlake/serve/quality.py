"""The quarantine report: counts per table and rule, with example keys (never PHI values)."""

from __future__ import annotations

from typing import Any

from rcmlake.engines.base import EngineSession


def quality_report(
    s: EngineSession, entities: list[str], examples: int = 3
) -> list[dict[str, Any]]:
    """One row per (table, datasource, rule, severity): affected rows and a few example keys."""
    rows: list[dict[str, Any]] = []
    for entity in entities:
        cols = s.sql(f"SELECT * FROM silver.{entity} LIMIT 0").column_names
        key = next(c for c in cols if c.endswith("_key") or c in ("cpt_code", "icd_code", "npi"))
        current = "is_current" if "is_current" in cols else "true"
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
