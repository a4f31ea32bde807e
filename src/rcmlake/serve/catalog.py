"""Every silver and gold table as a view, by name, in one DuckDB session.

``patients`` and ``silver.patients`` both work; so do ``fact_claim`` and
``gold.fact_claim``. The audit log is ``audit_loads``.
"""

from __future__ import annotations

from rcmlake.engines.base import EngineSession
from rcmlake.storage import release
from rcmlake.storage.audit import AUDIT_PATH
from rcmlake.storage.delta import Lake
from rcmlake.transforms import models


def _read_at(lake: Lake) -> dict[str, tuple[str, int | None]]:
    """Qualified name -> (lake path, version to read) for every model, built or not. Gold is
    read at the versions of its latest release, so a reader never mixes tables of two builds;
    silver (and gold before any release) at the current version."""
    pinned = release.latest(lake)
    return {
        f"{layer}.{m.name}": (
            f"{layer}/{m.name}",
            pinned.versions.get(m.name) if pinned and layer == "gold" else None,
        )
        for layer in ("silver", "gold")
        for m in models(layer)
    }


def lake_tables(lake: Lake) -> dict[str, tuple[str, int | None]]:
    """Qualified name (``silver.patients``) -> (lake path, version to read), for the tables
    that exist."""
    return {
        name: (path, version)
        for name, (path, version) in _read_at(lake).items()
        if version is not None or lake.exists(path)
    }


def register_lake(s: EngineSession, lake: Lake) -> list[str]:
    """Register every table as ``layer.name`` and as its bare name; returns the qualified names."""
    names = []
    for layer in ("silver", "gold"):
        s.execute(f"CREATE SCHEMA IF NOT EXISTS {layer}")
    for qualified, (path, version) in _read_at(lake).items():
        data = lake.dataset(path, version)  # one open per table; None when not built
        if data is None:
            continue
        layer, name = qualified.split(".")
        s.register(f"_{layer}_{name}", data)
        s.execute(f"CREATE OR REPLACE VIEW {qualified} AS SELECT * FROM _{layer}_{name}")
        s.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM {qualified}")
        names.append(qualified)
    audit = lake.dataset(AUDIT_PATH)
    if audit is not None:
        s.register("audit_loads", audit)
    return names
