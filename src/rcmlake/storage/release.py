"""Gold releases: the set of gold table versions that readers see, published in one commit.

Gold is many Delta tables, each its own commit. A reader that opened each at
its current version while a build was half done would join new facts to old
dimensions. So a build ends by appending one row to ``_releases/gold`` naming
the version of every gold table it wrote; ``sql``, exports and the dashboard
open gold at those versions. A build that fails or is killed publishes
nothing, and readers keep the previous release.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from rcmlake.storage.delta import Lake
from rcmlake.storage.lake_types import UTC_TS

RELEASE_PATH = "_releases/gold"
SCHEMA = pa.schema(
    [
        ("release_id", pa.string()),
        ("run_id", pa.string()),
        ("fingerprint", pa.string()),
        ("versions", pa.string()),  # JSON: gold table -> Delta version
        ("as_of_date", pa.string()),
        ("created_at", UTC_TS),
    ]
)


@dataclass(frozen=True)
class Release:
    release_id: str
    run_id: str
    fingerprint: str
    versions: dict[str, int]
    as_of_date: str
    created_at: datetime


def releases(lake: Lake) -> list[Release]:
    """Every release, oldest first; release number ``n`` is ``releases(lake)[n - 1]``."""
    table = lake.read(RELEASE_PATH)
    if table is None:
        return []
    rows: list[dict[str, Any]] = table.sort_by([("created_at", "ascending")]).to_pylist()
    return [Release(**{**r, "versions": json.loads(r["versions"])}) for r in rows]


def latest(lake: Lake, at: datetime | None = None) -> Release | None:
    """The newest release (made at or before ``at``), or None before the first gold build."""
    found = [r for r in releases(lake) if at is None or r.created_at <= at]
    return found[-1] if found else None


def publish(
    lake: Lake, *, run_id: str, fingerprint: str, versions: dict[str, int], as_of_date: str
) -> Release:
    """Append a release row (one commit): from now on readers see exactly ``versions``."""
    release = Release(
        release_id=f"release-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}",
        run_id=run_id,
        fingerprint=fingerprint,
        versions=dict(versions),
        as_of_date=as_of_date,
        created_at=datetime.now(UTC),
    )
    row = {**release.__dict__, "versions": json.dumps(release.versions, sort_keys=True)}
    lake.write(RELEASE_PATH, pa.Table.from_pylist([row], schema=SCHEMA), mode="append")
    return release
