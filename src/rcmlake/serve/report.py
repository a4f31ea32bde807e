"""One self-contained HTML dashboard: plotly.js inline, data inline, works offline with no server.

The page carries the gold marts as JSON and draws with plotly.js in the
browser, so the hospital and period filters re-aggregate from components
(never averaging ratios). When every chart has drawn, ``<body>`` gets
``data-rendered`` = number of charts; a script error lands in
``data-errors`` (the headless-browser test reads both).
"""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import plotly.offline

from rcmlake.engines.base import EngineSession

QUERIES = {
    "kpi": "SELECT * FROM gold.mart_kpi_monthly ORDER BY datasource, month",
    "revenue": "SELECT datasource, payer, payer_type, service_month AS month, gross_charges, payments, "
    "contractual_adjustments FROM gold.mart_revenue_monthly",
    "aging": "SELECT as_of_date, datasource, payer, aging_bucket, bucket_order, ar_amount "
    "FROM gold.mart_ar_aging",
    # CARC reasons (835 remittances) as "CARC 50: …"; sources without 835 files keep theirs
    "denials": "SELECT datasource, payer, CASE WHEN reason_code IS NOT NULL "
    "THEN 'CARC ' || reason_code || ': ' || left(denial_reason, 60) ELSE denial_reason END AS denial_reason, "
    "claim_month AS month, denied_claims, denied_amount FROM gold.mart_denials",
    "remit": "SELECT datasource, month, claims_adjudicated, claims_denied_initial, claims_denied_final, "
    "charges_adjudicated, charges_denied_initial FROM gold.mart_remittance_monthly",
}


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()[:10]
    return value


def report_data(s: EngineSession) -> dict[str, Any]:
    """The page's marts and parameters (``Project.report`` adds the quality counts)."""
    data: dict[str, Any] = {
        name: [{k: _plain(v) for k, v in row.items()} for row in s.sql(sql).to_pylist()]
        for name, sql in QUERIES.items()
    }
    params = s.sql(
        "SELECT any_value(aging_basis) AS basis, max(as_of_date) AS as_of FROM gold.mart_ar_aging"
    ).to_pylist()
    data["meta"] = {k: _plain(v) for k, v in params[0].items()}
    data["meta"]["generated_at"] = datetime.now().isoformat(timespec="seconds")
    return data


def write_report(data: dict[str, Any], out: Path, title: str = "rcmlake — revenue cycle") -> Path:
    template = (
        resources.files("rcmlake.serve").joinpath("dashboard.html").read_text(encoding="utf-8")
    )
    html = (
        template.replace("{{TITLE}}", title)
        .replace("{{PLOTLY}}", plotly.offline.get_plotlyjs())
        .replace("{{DATA}}", json.dumps(data).replace("</", "<\\/"))
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return out
