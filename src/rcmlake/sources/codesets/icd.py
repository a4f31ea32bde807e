"""ICD-10-CM from the NLM Clinical Tables API, or the packaged slice when offline.

The API answers ``[total, [codes], extra, [[code, name], …]]``; it pages with
``offset`` and ``count`` (at most 500).
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa

from rcmlake.sources.codesets.http import ApiClient
from rcmlake.synth.catalog import icd_catalog

SCHEMA = pa.schema(
    [("code", pa.string()), ("description", pa.string()), ("code_type", pa.string())]
)


def packaged() -> pa.Table:
    """The packaged ICD-10-CM slice, in the bronze layout."""
    cat = icd_catalog()
    return pa.table(
        {
            "code": cat["code"],
            "description": cat["description"],
            "code_type": pa.repeat(pa.scalar("ICD-10-CM"), cat.num_rows),
        },
        schema=SCHEMA,
    )


def search(api: ApiClient, terms: str, page_size: int = 500) -> list[tuple[str, str]]:
    """Every (code, name) the API returns for ``terms``, following pages to the total."""
    found: list[tuple[str, str]] = []
    offset = 0
    while True:
        total, _codes, _extra, rows = api.get_json(
            params={
                "sf": "code,name",
                "terms": terms,
                "count": page_size,
                "offset": offset,
                "df": "code,name",
            }
        )[:4]
        found.extend((r[0], r[1]) for r in rows or [])
        offset += page_size
        if offset >= int(total) or not rows:
            return found


NOT_FOUND = "NOT_FOUND"


def lookup(api: ApiClient, codes: Iterable[str], page_size: int = 500) -> pa.Table:
    """Descriptions of exactly these codes.

    A code the API does not know comes back with ``code_type = NOT_FOUND`` so the
    caller remembers it and does not ask again on every run.
    """
    out: dict[str, tuple[str | None, str]] = {}
    for code in sorted({c.upper() for c in codes}):
        out[code] = (None, NOT_FOUND)
        for found, name in search(api, code, page_size):
            if found.upper() == code:
                out[code] = (name, "ICD-10-CM")
    return pa.table(
        {
            "code": list(out),
            "description": [v[0] for v in out.values()],
            "code_type": [v[1] for v in out.values()],
        },
        schema=SCHEMA,
    )
