"""Providers from the NPPES NPI Registry API (version 2.1).

Lookups are by ``number``; searches page with ``limit`` (≤ 200) and ``skip``.
NPIs stay strings: ten digits with a Luhn check digit over the 80840 prefix.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pyarrow as pa

from rcmlake.sources.codesets.http import ApiClient

SCHEMA = pa.schema(
    [
        ("npi", pa.string()),
        ("enumeration_type", pa.string()),
        ("first_name", pa.string()),
        ("last_name", pa.string()),
        ("credential", pa.string()),
        ("organization_name", pa.string()),
        ("taxonomy_code", pa.string()),
        ("taxonomy", pa.string()),
        ("status", pa.string()),
        ("last_updated", pa.string()),
    ]
)


def luhn_valid(npi: str) -> bool:
    """The NPI check digit (ISO/IEC 7812 Luhn over ``80840`` + the first nine digits)."""
    if len(npi) != 10 or not npi.isdigit():
        return False
    digits = [int(c) for c in "80840" + npi][::-1]
    total = sum(
        d if i % 2 == 0 else (d * 2 - 9 if d * 2 > 9 else d * 2) for i, d in enumerate(digits)
    )
    return total % 10 == 0


def _flatten(result: dict[str, Any]) -> dict[str, Any]:
    basic = result.get("basic", {})
    taxonomies = result.get("taxonomies") or []
    primary = next((t for t in taxonomies if t.get("primary")), taxonomies[0] if taxonomies else {})
    return {
        "npi": str(result.get("number")),
        "enumeration_type": result.get("enumeration_type"),
        "first_name": basic.get("first_name") or basic.get("authorized_official_first_name"),
        "last_name": basic.get("last_name") or basic.get("authorized_official_last_name"),
        "credential": basic.get("credential"),
        "organization_name": basic.get("organization_name"),
        "taxonomy_code": primary.get("code"),
        "taxonomy": primary.get("desc"),
        "status": basic.get("status"),
        "last_updated": basic.get("last_updated"),
    }


NOT_FOUND = "NOT_FOUND"


def lookup(api: ApiClient, numbers: Iterable[str]) -> pa.Table:
    """Registry records of these NPIs.

    A number the registry does not know (or that fails the check digit) comes
    back as a ``status = NOT_FOUND`` row, so the caller can remember it and not
    ask again on every run.
    """
    rows: list[dict[str, Any]] = []
    for number in sorted(set(numbers)):
        results: list[dict[str, Any]] = []
        if luhn_valid(number):
            results = api.get_json(params={"version": "2.1", "number": number}).get("results") or []
        rows.extend(_flatten(r) for r in results)
        if not results:
            rows.append({"npi": number, "status": NOT_FOUND})
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def search(api: ApiClient, page_size: int = 200, **criteria: str) -> pa.Table:
    """All registry records matching ``criteria`` (state, city, taxonomy_description …), page by page."""
    rows: list[dict[str, Any]] = []
    skip = 0
    while True:
        answer = api.get_json(
            params={"version": "2.1", "limit": page_size, "skip": skip, **criteria}
        )
        page = answer.get("results") or []
        rows.extend(_flatten(r) for r in page)
        skip += len(page)
        # result_count is the size of this page, so a short page is the last one
        if len(page) < page_size:
            return pa.Table.from_pylist(rows, schema=SCHEMA)
