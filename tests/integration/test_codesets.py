"""Code sets: real HTTP clients against a local server serving recorded-shape NLM and NPPES answers."""

from __future__ import annotations

import csv
import json
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs, urlparse

import pyarrow.compute as pc
import pytest

from rcmlake.errors import SourceError
from rcmlake.layers.silver import silver_path
from rcmlake.sources.codesets import icd, npi
from rcmlake.sources.codesets.http import ApiClient
from rcmlake.synth.catalog import icd_catalog
from tests.conftest import make_project

ICD = dict(
    zip(icd_catalog()["code"].to_pylist(), icd_catalog()["description"].to_pylist(), strict=True)
)
ICD.update(
    {f"R{i:02d}.{j}": f"Symptom {i}.{j}" for i in range(10, 14) for j in range(10)}
)  # a bigger search space


class Fake(BaseHTTPRequestHandler):
    """Answers like clinicaltables.nlm.nih.gov (ICD-10-CM) and npiregistry.cms.hhs.gov (v2.1)."""

    calls: ClassVar[Counter[str]] = Counter()
    fail_first: ClassVar[set[str]] = set()
    npis: ClassVar[dict[str, dict]] = {}

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        url = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        Fake.calls[url.path] += 1
        if url.path in Fake.fail_first:
            Fake.fail_first.discard(url.path)
            return self._send(503, {"error": "busy"})
        if url.path == "/icd":
            terms = q["terms"].upper()
            hits = sorted(
                (c, n) for c, n in ICD.items() if c.startswith(terms) or terms.lower() in n.lower()
            )
            offset, count = int(q.get("offset", 0)), int(q.get("count", 7))
            page = hits[offset : offset + count]
            return self._send(
                200, [len(hits), [c for c, _ in page], None, [[c, n] for c, n in page]]
            )
        if url.path == "/npi/":
            if "number" in q:
                rec = Fake.npis.get(q["number"])
                return self._send(
                    200, {"result_count": int(rec is not None), "results": [rec] if rec else []}
                )
            matches = [
                r for r in Fake.npis.values() if r["addresses"][0]["state"] == q.get("state")
            ]
            skip, limit = int(q.get("skip", 0)), int(q.get("limit", 10))
            page = matches[skip : skip + limit]
            return self._send(200, {"result_count": len(page), "results": page})
        return self._send(404, {"error": "not found"})

    def _send(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def registry_record(number: str, i: int) -> dict:
    return {
        "number": int(number),
        "enumeration_type": "NPI-1",
        "basic": {
            "first_name": f"ANA{i}",
            "last_name": "RIVERA",
            "credential": "M.D.",
            "status": "A",
            "last_updated": "2024-03-01",
        },
        "taxonomies": [{"code": "207R00000X", "desc": "Internal Medicine", "primary": True}],
        "addresses": [{"state": "IL", "city": "SPRINGFIELD"}],
    }


@pytest.fixture
def server() -> Iterator[str]:
    Fake.calls = Counter()
    Fake.fail_first = set()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Fake)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_icd_search_pages_to_the_total(server: str) -> None:
    with ApiClient(f"{server}/icd", per_second=100) as api:
        found = icd.search(api, "R1", page_size=7)
    assert len(found) == 40 and len({c for c, _ in found}) == 40
    assert Fake.calls["/icd"] == 6  # ceil(40 / 7)


def test_retries_transient_errors_then_fails_clearly(server: str) -> None:
    Fake.fail_first = {"/icd"}
    with ApiClient(f"{server}/icd", per_second=100, backoff=0.01) as api:
        table = icd.lookup(api, ["E11.9", "NOPE.1"])
    assert table.to_pylist() == [
        {"code": "E11.9", "description": ICD["E11.9"], "code_type": "ICD-10-CM"},
        {"code": "NOPE.1", "description": None, "code_type": "NOT_FOUND"},
    ]
    with (
        ApiClient(f"{server}/missing", per_second=100) as api,
        pytest.raises(SourceError, match="HTTP 404"),
    ):
        api.get_json()
    with (
        ApiClient("http://127.0.0.1:9", per_second=100, attempts=2, backoff=0.01) as api,
        pytest.raises(SourceError, match="ConnectError"),
    ):
        api.get_json()


def test_rate_limit_spaces_requests(server: str) -> None:
    import time

    with ApiClient(f"{server}/icd", per_second=20) as api:
        start = time.monotonic()
        for _ in range(5):
            api.get_json(params={"terms": "E11", "sf": "code,name"})
        assert time.monotonic() - start >= 4 / 20


def test_npi_luhn_and_search_paging(server: str) -> None:
    assert (
        npi.luhn_valid("1234567893")
        and not npi.luhn_valid("1234567890")
        and not npi.luhn_valid("123")
    )
    Fake.npis = {
        str(1_000_000_000 + i): registry_record(str(1_000_000_000 + i), i) for i in range(450)
    }
    with ApiClient(f"{server}/npi/", per_second=100) as api:
        table = npi.search(api, state="IL")
    assert table.num_rows == 450 and Fake.calls["/npi/"] == 3
    assert table.column("taxonomy").unique().to_pylist() == ["Internal Medicine"]


def test_api_code_sets_feed_silver_and_are_cached(workdir: Path, server: str) -> None:
    import json as _json

    from rcmlake.layers.bronze import bronze_path

    project = make_project(
        workdir,
        codesets={
            "icd": {"mode": "api", "url": f"{server}/icd", "requests_per_second": 200},
            "npi": {"mode": "api", "url": f"{server}/npi/", "requests_per_second": 200},
        },
    )
    project.run(["bronze"])  # first, to learn the NPIs our providers carry
    providers = project.lake.read(bronze_path("hospital_a", "providers"))
    nums = [str(n) for n in providers["NPI"].to_pylist()]
    Fake.npis = {
        n: registry_record(n, i) for i, n in enumerate(nums[:30])
    }  # the registry knows 30 of 40
    Fake.calls = Counter()
    project = make_project(
        workdir,
        codesets={
            "icd": {"mode": "api", "url": f"{server}/icd", "requests_per_second": 200},
            "npi": {"mode": "api", "url": f"{server}/npi/", "requests_per_second": 200},
        },
    )
    (workdir / "lake" / "bronze" / "codesets").exists() and __import__("shutil").rmtree(
        workdir / "lake" / "bronze" / "codesets"
    )
    result = project.run(["bronze", "silver"])
    assert result.exit_code == 0, [(r.table, r.error) for r in result.failed]
    codes = project.lake.read(silver_path("icd_codes"))
    used = set(icd_catalog()["code"].to_pylist())
    # exactly the codes the hospitals use that the API knows (ZZZ.999 is not a code)
    tx_codes = set(
        project.lake.read(silver_path("transactions"))["icd_code"].drop_null().to_pylist()
    )
    assert set(codes["icd_code"].to_pylist()) == (tx_codes & used)
    assert codes.num_rows > 0 and "ZZZ.999" not in codes["icd_code"].to_pylist()
    registry = project.lake.read(silver_path("npi_providers"))
    assert registry.num_rows == 30 and set(registry["npi"].to_pylist()) == set(nums[:30])
    manifest = _json.loads((workdir / "synth_manifest.json").read_text())
    tx = project.lake.read(silver_path("transactions"))
    icd_bad = tx.filter(
        pc.and_(
            pc.equal(tx["datasource"], "hospital_a"),
            pc.is_in(
                tx["source_transaction_id"],
                pc.cast(manifest["defects"]["hospital_a"]["transaction_unknown_icd"], "string"),
            ),
        )
    )
    injected = manifest["defects"]["hospital_a"]["transaction_unknown_icd"]
    assert icd_bad.num_rows == len(injected) > 0
    assert all("icd_code_known" in f for f in icd_bad["dq_failures"].to_pylist())
    # every NPI of both hospitals was asked once; misses are remembered, so a second run asks nothing
    assert Fake.calls["/npi/"] == 80
    Fake.calls = Counter()
    project.run(["bronze", "silver"])
    assert sum(Fake.calls.values()) == 0
    assert project.lake.read(silver_path("npi_providers")).num_rows == 30


def test_cpt_code_changes_are_versioned(workdir: Path) -> None:
    project = make_project(workdir)
    project.run(["bronze", "silver"])
    archived = workdir / "landing" / "archive" / "cptcodes" / "cptcodes.csv"
    text = archived.read_text().replace(
        "Lipid panel", "Lipid panel (total cholesterol, HDL, triglycerides)"
    )
    (workdir / "landing" / "cptcodes" / "cptcodes_2025_q3.csv").write_text(text)
    project.run(["bronze", "silver"])
    cpt = project.lake.read(silver_path("cpt_codes"))
    lipid = sorted(
        cpt.filter(pc.equal(cpt["cpt_code"], "80061")).to_pylist(),
        key=lambda r: r["effective_from"],
    )
    assert [r["description"] for r in lipid] == [
        "Lipid panel",
        "Lipid panel (total cholesterol, HDL, triglycerides)",
    ]
    assert [r["is_current"] for r in lipid] == [False, True] and lipid[0]["effective_to"] == lipid[
        1
    ]["effective_from"]
    catalog = len(list(csv.DictReader(archived.open(encoding="utf-8"))))  # the CPT file's rows
    assert cpt.filter(pc.equal(cpt["is_current"], True)).num_rows == catalog
