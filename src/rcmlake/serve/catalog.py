"""Every silver and gold table as a view, by name, in one DuckDB session.

``patients`` and ``silver.patients`` both work; so do ``fact_claim`` and
``gold.fact_claim``. The audit log is ``audit_loads``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from rcmlake.engines.base import Engine, EngineSession
from rcmlake.errors import ConfigError
from rcmlake.serve.access import check_role
from rcmlake.storage import release
from rcmlake.storage.audit import AUDIT_PATH
from rcmlake.storage.delta import Lake
from rcmlake.transforms import models


def _read_at(lake: Lake, as_of: str | None = None) -> dict[str, tuple[str, int | None]]:
    """Qualified name -> (lake path, version to read) for every model, built or not. Gold is
    read at the versions of its latest release, so a reader never mixes tables of two builds;
    silver (and gold before any release) at the current version.

    ``as_of`` travels back: a release number (``rcmlake history`` lists them) or a time
    (ISO 8601, UTC unless it says otherwise) reads gold at that release — the one current
    then — and silver at the versions current when that release was made."""
    if as_of is None:
        pinned, when = release.latest(lake), None
    else:
        pinned, when = _release_as_of(lake, as_of)
    out: dict[str, tuple[str, int | None]] = {}
    for layer in ("silver", "gold"):
        for m in models(layer):
            path = f"{layer}/{m.name}"
            if layer == "gold" and pinned is not None:
                version = pinned.versions.get(m.name)
            elif when is not None:
                version = lake.version_at(path, when)
                if version is None:
                    continue  # the table did not exist yet
            else:
                version = None
            out[f"{layer}.{m.name}"] = (path, version)
    return out


def _release_as_of(lake: Lake, as_of: str) -> tuple[release.Release | None, datetime]:
    known = release.releases(lake)
    if as_of.isdigit():
        n = int(as_of)
        if not 1 <= n <= len(known):
            raise ConfigError(f"no release {n}; the lake has releases 1..{len(known)}")
        return known[n - 1], known[n - 1].created_at
    try:
        when = datetime.fromisoformat(as_of.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"--as-of {as_of!r}: give a release number or a time such as 2026-07-01T08:00"
        ) from None
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    pinned = release.latest(lake, at=when)
    if pinned is None and known:
        raise ConfigError(f"no gold release before {when:%Y-%m-%d %H:%M}; the first is release 1")
    return pinned, when


def lake_tables(lake: Lake, as_of: str | None = None) -> dict[str, tuple[str, int | None]]:
    """Qualified name (``silver.patients``) -> (lake path, version to read), for the tables
    that exist."""
    return {
        name: (path, version)
        for name, (path, version) in _read_at(lake, as_of).items()
        if version is not None or lake.exists(path)
    }


def register_lake(
    s: EngineSession,
    lake: Lake,
    as_of: str | None = None,
    *,
    role: str = "privileged",
    engine: Engine | None = None,
    needed: str | None = None,
) -> list[str]:
    """Register every table as ``layer.name`` and as its bare name (at ``as_of``: see
    ``_read_at``); returns the qualified names.

    As ``analyst`` (``engine`` needed), tables with direct identifiers arrive masked and
    the session is locked down (``serve.access``); with ``needed`` (the query's text),
    only the masked tables it names are loaded, so a query on gold copies nothing."""
    from rcmlake.serve import access

    check_role(role)
    analyst = role == "analyst"
    salt = access.masking_salt(lake) if analyst else ""
    names = []
    for layer in ("silver", "gold"):
        s.execute(f"CREATE SCHEMA IF NOT EXISTS {layer}")
    for qualified, (path, version) in _read_at(lake, as_of).items():
        layer, name = qualified.split(".")
        masked = analyst and bool(access.classification(layer, name)["direct"])
        if masked and needed is not None and not re.search(rf"\b{re.escape(name)}\b", needed):
            continue  # a whole name: `claims` is not in `claims_adjudicated`
        if not analyst:
            # the engine's own reader where it has one (pruned, within its memory limit); an
            # analyst session is locked away from files, so it scans through delta-rs
            if not s.read_lake(qualified, lake, path, version=version):
                continue  # not built
        else:
            data = lake.dataset(path, version)  # one open per table; None when not built
            if data is None:
                continue
            if masked:
                assert engine is not None, "the analyst role reads masked tables through the engine"
                access.load_masked(s, engine, qualified, data, salt)
            else:
                s.register(f"_{layer}_{name}", data)
                s.execute(f"CREATE OR REPLACE VIEW {qualified} AS SELECT * FROM _{layer}_{name}")
        s.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM {qualified}")
        names.append(qualified)
    audit = lake.dataset(AUDIT_PATH)
    if audit is not None:
        s.register("audit_loads", audit)
    if analyst:
        access.lock_down(s)
    return names
