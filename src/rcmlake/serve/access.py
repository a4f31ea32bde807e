"""Roles: what a reader of the lake may see of patient data.

Columns are classified in the model sidecars (``classification:`` in silver.yml and
gold.yml): direct identifiers carry the mask the ``analyst`` role sees; quasi
identifiers and financial columns are listed. ``privileged`` sees every value.

An analyst session never holds an unmasked direct identifier: each table that has
one is read through a second, private session and only its masked rows are loaded
into the analyst's (there is no raw relation in the analyst session to name), and
the analyst session cannot read or write host files (DuckDB's external access off,
configuration locked). Keys are hashed with a salt, so joins on them still work but
a medical record number cannot be looked up by hashing candidates.
"""

from __future__ import annotations

import os
import secrets
from typing import Any

from rcmlake.engines.base import Engine, EngineSession, quote_ident
from rcmlake.errors import ConfigError
from rcmlake.storage.delta import Lake
from rcmlake.transforms import models

ROLES = ("analyst", "privileged")
SALT_ENV = "RCMLAKE_MASKING_SALT"
SALT_FILE = "_keys/masking_salt"


def classification(layer: str, name: str) -> dict[str, Any]:
    """``direct`` (column -> mask), ``quasi`` and ``financial`` (column lists) of a model."""
    spec = next(m.spec for m in models(layer) if m.name == name)
    found = spec.get("classification", {})
    return {
        "direct": dict(found.get("direct", {})),
        "quasi": list(found.get("quasi", [])),
        "financial": list(found.get("financial", [])),
    }


def column_class(layer: str, name: str, column: str) -> str:
    """``direct identifier``, ``quasi-identifier``, ``financial`` or ``none``."""
    c = classification(layer, name)
    if column in c["direct"]:
        return f"direct identifier (analyst: {c['direct'][column]})"
    if column in c["quasi"]:
        return "quasi-identifier"
    return "financial" if column in c["financial"] else "none"


def mask_sql(mask: str, column: str, salt: str) -> str:
    """SQL for ``column`` as the analyst role sees it (NULL stays NULL)."""
    c = quote_ident(column)
    if mask == "hash":
        literal = salt.replace("'", "''")
        return f"CASE WHEN {c} IS NULL THEN NULL ELSE 'h:' || left(sha256('{literal}' || CAST({c} AS VARCHAR)), 16) END"
    if mask == "redact":
        return f"CASE WHEN {c} IS NULL THEN NULL ELSE '(redacted)' END"
    if mask == "last4":
        return f"CASE WHEN {c} IS NULL THEN NULL ELSE '***-**-' || right(regexp_replace({c}, '[^0-9]', '', 'g'), 4) END"
    if mask == "year":
        return f"CAST(date_trunc('year', {c}) AS DATE)"
    if mask == "zip3":
        return f"left({c}, 3)"
    raise ValueError(f"unknown mask {mask!r}")


def masking_salt(lake: Lake) -> str:
    """The salt of hashed keys: ``$RCMLAKE_MASKING_SALT``, else a random one kept beside a
    local lake (created once, readable by its owner only)."""
    if value := os.environ.get(SALT_ENV):
        return value
    if not lake.is_local:
        raise ConfigError(f"set {SALT_ENV} to hash keys for the analyst role on {lake.root}")
    path = os.path.join(lake.root.removeprefix("file://"), SALT_FILE)
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    with open(path, encoding="utf-8") as f:
        return f.read().strip()


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ConfigError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    return role


def masked_query(layer: str, name: str, relation: str, columns: list[str], salt: str) -> str | None:
    """``SELECT`` of ``relation`` with the analyst masks applied; None if nothing to mask."""
    direct = {c: m for c, m in classification(layer, name)["direct"].items() if c in columns}
    if not direct:
        return None
    cols = ", ".join(
        f"{mask_sql(direct[c], c, salt)} AS {quote_ident(c)}" if c in direct else quote_ident(c)
        for c in columns
    )
    return f"SELECT {cols} FROM {relation}"


def load_masked(
    analyst: EngineSession, engine: Engine, qualified: str, data: Any, salt: str
) -> bool:
    """Create ``qualified`` in the analyst session from ``data`` with its direct identifiers
    masked, read through a private session; False when the table has nothing to mask."""
    layer, name = qualified.split(".")
    with engine.session() as raw:  # private: the analyst session never holds raw rows
        raw.register("raw", data)
        columns = raw.sql("SELECT * FROM raw LIMIT 0").column_names
        query = masked_query(layer, name, "raw", columns, salt)
        if query is None:
            return False
        analyst.register("_masked_load", raw.stream(query))
        analyst.execute(f"CREATE TABLE {qualified} AS SELECT * FROM _masked_load")
        analyst.execute("DROP VIEW IF EXISTS _masked_load")
    return True


def lock_down(s: EngineSession) -> None:
    """No host files from here on (no read_csv('/etc/…'), no COPY TO), and no way back.

    The setting is the database's, so ``s`` must be a database of its own (a private
    session): locking a session of the engine's shared database would lock the engine."""
    if getattr(s, "catalog", None) is not None:
        raise AssertionError("lock_down needs a private session (engine.session(private=True))")
    s.execute("SET enable_external_access = false")
    s.execute("SET lock_configuration = true")
