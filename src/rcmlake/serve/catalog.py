"""Every silver and gold table as a view, by name, in one DuckDB session.

``patients`` and ``silver.patients`` both work; so do ``fact_claim`` and
``gold.fact_claim``. The audit log is ``audit_loads``.
"""

from __future__ import annotations

from rcmlake.engines.base import EngineSession
from rcmlake.storage.audit import AUDIT_PATH
from rcmlake.storage.delta import Lake
from rcmlake.transforms import models


def lake_tables(lake: Lake) -> dict[str, str]:
    """Qualified name (``silver.patients``) -> lake path, for the tables that exist."""
    out = {}
    for layer in ("silver", "gold"):
        for m in models(layer):
            path = f"{layer}/{m.name}"
            if lake.exists(path):
                out[f"{layer}.{m.name}"] = path
    return out


def register_lake(s: EngineSession, lake: Lake) -> list[str]:
    """Register every table as ``layer.name`` and as its bare name; returns the qualified names."""
    names = []
    for layer in ("silver", "gold"):
        s.execute(f"CREATE SCHEMA IF NOT EXISTS {layer}")
        for m in models(layer):
            data = lake.dataset(f"{layer}/{m.name}")  # one open per table; None when not built
            if data is None:
                continue
            s.register(f"_{layer}_{m.name}", data)
            s.execute(f"CREATE OR REPLACE VIEW {layer}.{m.name} AS SELECT * FROM _{layer}_{m.name}")
            s.execute(f"CREATE OR REPLACE VIEW {m.name} AS SELECT * FROM {layer}.{m.name}")
            names.append(f"{layer}.{m.name}")
    audit = lake.dataset(AUDIT_PATH)
    if audit is not None:
        s.register("audit_loads", audit)
    return names
