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
    """Register every table as ``layer.name`` and as its bare name; returns the bare names."""
    names = []
    for layer in ("silver", "gold"):
        s.execute(f"CREATE SCHEMA IF NOT EXISTS {layer}")
    for qualified, path in lake_tables(lake).items():
        layer, name = qualified.split(".")
        data = lake.dataset(path)
        s.register(f"_{layer}_{name}", data)
        s.execute(f"CREATE OR REPLACE VIEW {qualified} AS SELECT * FROM _{layer}_{name}")
        s.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM {qualified}")
        names.append(name)
    audit = lake.dataset(AUDIT_PATH)
    if audit is not None:
        s.register("audit_loads", audit)
        names.append("audit_loads")
    return names
