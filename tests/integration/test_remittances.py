"""X12 835 remittances: the public example files as documented, malformed ones rejected,
re-sent files idempotent, balancing rules, matching and denial reasons."""

from __future__ import annotations

import os
from collections import Counter
from decimal import Decimal
from pathlib import Path

import oxedi
import pytest

from rcmlake.engines.duckdb import size_bytes
from rcmlake.layers.silver import silver_path
from rcmlake.project import Project
from tests.conftest import make_project

ROOT = Path(__file__).resolve().parents[2]


def corpus() -> Path:
    """The public X12 examples (``tests/data/x12``: a copy of the shared corpus, so a
    clone anywhere has it; ``$RCMLAKE_X12_CORPUS`` overrides)."""
    found = Path(os.environ.get("RCMLAKE_X12_CORPUS", ROOT / "tests" / "data" / "x12"))
    if not (found / "835").is_dir():
        message = f"the X12 test corpus is not at {found}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


# tests/data/x12/README.md: claims (CLP), lines (SVC), BPR02, CAS group-reason × count, PLB
EXPECTED = {
    "X221-dollars-and-data-sent-separate": (2, 2, "945.00", {"CO-45": 1, "CO-A2": 2, "PR-1": 2}, 0),
    "X221-dollars-and-data-sent-together": (2, 0, "150000.00", {"CO-45": 2}, 1),
    "X221-era-sample": (1, 5, "132.00", {"CO-131": 5}, 0),
    "X221-multiple-claims-single-check": (9, 33, "810.80", {"CO-131": 33, "PR-3": 6}, 0),
    "X221-secondary-payment-with-higher-fee-schedule": (1, 1, "34.00", {"OA-23": 1, "OA-94": 1}, 0),
    "X221-secondary-payments": (2, 2, "1222.00", {"CO-42": 1, "OA-23": 2, "PR-1": 1, "PR-2": 1}, 0),
    "X221-tertiary-payments": (1, 1, "187.50", {"OA-23": 1}, 0),
}


@pytest.fixture
def workdir(workdir: Path) -> Path:
    """The synthetic hospitals without their synthetic 835 files: these tests land their own."""
    for f in (workdir / "landing" / "remittances").glob("*.835"):
        f.unlink()
    return workdir


def land(workdir: Path, name: str, content: bytes) -> None:
    folder = workdir / "landing" / "remittances"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(content)


def rows(project: Project, entity: str) -> list[dict]:
    data = project.lake.read(silver_path(entity))
    return data.to_pylist() if data is not None else []


def by_file(items: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in items:
        out.setdefault(Path(r["source_file"]).stem.removeprefix("hospital1_"), []).append(r)
    return out


def test_every_public_835_loads_with_its_documented_content(workdir: Path) -> None:
    for f in sorted((corpus() / "835").glob("*.edi")):
        land(workdir, f"hospital1_{f.stem}.835", f.read_bytes())
    project = make_project(workdir)
    result = project.run()
    assert result.exit_code == 0, [(r.table, r.error) for r in result.failed]
    claims = by_file(rows(project, "remittance_claims"))
    lines = by_file(rows(project, "remittance_lines"))
    payments = by_file(rows(project, "remittance_payments"))
    adjustments = rows(project, "claim_adjustments")
    plb = rows(project, "provider_adjustments")
    claim_file = {r["remittance_claim_key"]: name for name, rs in claims.items() for r in rs}
    for name, (n_claims, n_lines, total, cas, n_plb) in EXPECTED.items():
        assert len(claims[name]) == n_claims, name
        assert len(lines.get(name, [])) == n_lines, name
        assert [str(p["total_payment_amount"]) for p in payments[name]] == [total], name
        got = Counter(
            f"{a['group_code']}-{a['reason_code']}"
            for a in adjustments
            if claim_file[a["remittance_claim_key"]] == name
        )
        assert got == cas, name
        keys = {p["payment_key"] for p in payments[name]}
        assert sum(1 for p in plb if p["payment_key"] in keys) == n_plb, name
    # every file balances: nothing quarantined
    for entity in ("remittance_claims", "remittance_lines", "remittance_payments"):
        assert not [r["dq_failures"] for r in rows(project, entity) if r["is_quarantined"]], entity
    # the MOA remark of the "together" file, and the CARC descriptions in gold
    remarks = rows(project, "remittance_remarks")
    assert [r["remark_code"] for r in remarks] == ["MA02"]
    reasons = project.sql("SELECT DISTINCT reason_code, category FROM fact_adjustment").to_pylist()
    assert {"reason_code": "45", "category": "contractual"} in reasons
    assert {"reason_code": "1", "category": "patient_responsibility"} in reasons
    # bronze keeps the raw segments with their positions
    segments = project.lake.read("bronze/hospital_a/remittances_segments").to_pylist()
    ids = Counter(s["segment_id"] for s in segments)
    assert (ids["CLP"], ids["SVC"], ids["BPR"]) == (18, 44, 7)
    assert all(s["raw"].startswith(s["segment_id"]) for s in segments)


def test_malformed_files_are_rejected_with_the_reason_and_the_rest_loads(workdir: Path) -> None:
    x12 = corpus()
    bad = {
        "bad_file.edi": "not an X12 interchange",
        "error_validation.edi": "ControlCountMismatch at segment 28",
        "segment_terminator.edi": "UnterminatedLoop",
        "unknown_segment_error.edi": "UnknownSegment at segment 2",
    }
    for name in bad:
        land(workdir, f"hospital1_{Path(name).stem}.835", (x12 / "bad" / name).read_bytes())
    claim_837 = sorted((x12 / "837p").glob("*.edi"))[0]
    land(workdir, "hospital1_an_837.835", claim_837.read_bytes())
    good = x12 / "835" / "X221-era-sample.edi"
    land(workdir, "hospital1_good.835", good.read_bytes())
    project = make_project(workdir)
    result = project.run()
    assert result.exit_code == 1
    rejected = {Path(r.source_file).stem: r.error for r in result.records if r.status == "rejected"}
    for name, reason in bad.items():
        stem = f"hospital1_{Path(name).stem}"
        assert reason in rejected[stem], (name, rejected.get(stem))
        reason_file = workdir / "landing" / "rejected" / "remittances" / f"{stem}.835.reason.txt"
        assert reason in reason_file.read_text()
    assert "UnknownSegment" in rejected["hospital1_an_837"]  # an 837 is not a remittance
    assert len(rows(project, "remittance_claims")) == 1  # the good file loaded
    assert {r.status for r in result.records if r.layer == "gold"} == {"success"}


def test_a_resent_remittance_changes_nothing(workdir: Path) -> None:
    content = (corpus() / "835" / "X221-multiple-claims-single-check.edi").read_bytes()
    land(workdir, "hospital1_week1.835", content)
    project = make_project(workdir)
    assert project.run().exit_code == 0
    before = {
        e: len(rows(project, e))
        for e in ("remittance_claims", "remittance_lines", "claim_adjustments")
    }
    # the same bytes under another name: skipped by checksum
    land(workdir, "hospital1_week1_again.835", content)
    # the same remittance in a new envelope (another interchange control number): loaded into
    # bronze, and silver's keys make it the same rows
    isa13 = content.split(b"*")[13]
    land(workdir, "hospital1_resent.835", content.replace(isa13, b"000000999"))
    result = project.run()
    assert result.exit_code == 0
    statuses = {Path(r.source_file).name: r.status for r in result.records if r.source_file}
    assert statuses["hospital1_week1_again.835"] == "skipped"
    assert statuses["hospital1_resent.835"] == "success"
    after = {e: len(rows(project, e)) for e in before}
    assert after == before


def test_an_unbalanced_file_is_loaded_and_its_rows_quarantined(workdir: Path) -> None:
    content = (corpus() / "835" / "X221-dollars-and-data-sent-separate.edi").read_bytes()
    land(
        workdir,
        "hospital1_off.835",
        content.replace(b"CLP*5554555444*1*800*450*", b"CLP*5554555444*1*800*451*"),
    )
    project = make_project(workdir)
    assert project.run().exit_code == 0
    claims = {r["patient_control_number"]: r for r in rows(project, "remittance_claims")}
    assert claims["5554555444"]["dq_failures"] == ["claim_balanced"]
    assert not claims["8765432112"]["is_quarantined"]
    (payment,) = rows(project, "remittance_payments")
    assert payment["dq_failures"] == ["payment_balanced"]  # 945 ≠ 451 + 495 − 0
    assert project.sql("SELECT count(*) FROM fact_remittance").column(0)[0].as_py() == 1


def test_totals_bronze_sums_equal_those_silver_sums_for_rows_an_older_bronze_loaded(
    workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bronze sums each claim's and line's CAS as it reads the 835 (``adjustment_total``).
    A lake whose bronze was written before it did has no such column, or NULL in it once a
    newer file added it: silver then sums ``claim_adjustments`` itself, and the totals and
    the balancing verdicts are the same either way."""
    import shutil

    from rcmlake.sources import x835

    separate = corpus() / "835" / "X221-dollars-and-data-sent-separate.edi"
    files = [f for f in sorted((corpus() / "835").glob("*.edi")) if f != separate]
    for f in files[:-1]:
        land(workdir, f"hospital1_{f.stem}.835", f.read_bytes())
    # one claim does not balance: 800 charged, 350 adjusted, 451 paid
    off = separate.read_bytes().replace(b"*1*800*450*", b"*1*800*451*")
    land(workdir, "hospital1_off.835", off)
    older = tmp_path / "older"
    shutil.copytree(workdir, older)

    def answers(project: Project) -> dict[str, dict[str, object]]:
        out = {}
        for entity, key in (
            ("remittance_claims", "remittance_claim_key"),
            ("remittance_lines", "remittance_line_key"),
        ):
            for r in rows(project, entity):
                out[r[key]] = {"total": r["adjustment_total"], "failures": r["dq_failures"]}
        return out

    def later(workdir: Path) -> None:
        land(workdir, f"hospital1_{files[-1].stem}.835", files[-1].read_bytes())

    # today's bronze, then a later file
    now = make_project(workdir)
    assert now.run().exit_code == 0
    later(workdir)
    assert now.run().exit_code == 0
    bronze = now.lake.read("bronze/hospital_a/remittances_claims")
    assert bronze is not None and bronze["adjustment_total"].null_count == 0

    # an older bronze, without the column; silver reads it before the later file adds it
    keyed = x835._keyed

    def without_totals(raw: dict) -> dict:
        out = keyed(raw)
        for part in ("claims", "services"):
            out[part] = out[part].drop_columns(["adjustment_total"])
        return out

    old = make_project(older)
    with monkeypatch.context() as patched:
        patched.setattr(x835, "_keyed", without_totals)
        assert old.run(["bronze"]).exit_code == 0
    assert (
        "adjustment_total" not in old.lake.read("bronze/hospital_a/remittances_claims").schema.names
    )
    assert old.run(["silver", "gold"]).exit_code == 0
    # a newer bronze adds the column (NULL in the older rows) and loads the later file
    later(older)
    assert old.run().exit_code == 0
    mixed = old.lake.read("bronze/hospital_a/remittances_claims")
    assert 0 < mixed["adjustment_total"].null_count < mixed.num_rows

    got, expected = answers(old), answers(now)
    assert got == expected and len(got) > 20
    # the totals, summed independently from the adjustments silver holds
    sums: dict[str, Decimal] = {}
    for a in rows(now, "claim_adjustments"):
        sums[a["remittance_claim_key"]] = (
            sums.get(a["remittance_claim_key"], Decimal(0)) + a["amount"]
        )
        if a["remittance_line_key"]:
            sums[a["remittance_line_key"]] = (
                sums.get(a["remittance_line_key"], Decimal(0)) + a["amount"]
            )
    assert {k: v["total"] for k, v in expected.items()} == {
        k: sums.get(k, Decimal(0)) for k in expected
    }
    unbalanced = [v for v in expected.values() if v["failures"] == ["claim_balanced"]]
    assert [v["total"] for v in unbalanced] == [Decimal("350.00")]


def test_a_first_build_streams_an_entity_whose_keys_are_unique(
    workdir: Path, streamed: list[tuple[str, bool]]
) -> None:
    """Rows with a key each go from bronze into the new table in one pass; what it counts
    (written, quarantined) is read back from the table and equals what is there."""
    content = (corpus() / "835" / "X221-dollars-and-data-sent-separate.edi").read_bytes()
    land(workdir, "hospital1_off.835", content.replace(b"*1*800*450*", b"*1*800*451*"))
    project = make_project(workdir)
    result = project.run()
    assert result.exit_code == 0
    answers = dict(streamed)
    assert answers["claim_adjustments"]
    # not a model that joins other entities (its lookups would run twice), nor one whose key
    # may fall back to the row hash (claims), nor SCD2: they are materialised first
    assert answers["remittance_claims"] is False and answers["claims"] is False
    assert answers["patients"] is False
    for entity in ("remittance_claims", "claim_adjustments"):
        (rec,) = [r for r in result.records if r.layer == "silver" and r.table == entity]
        held = rows(project, entity)
        assert rec.rows_read == rec.rows_written == len(held) > 0
        assert rec.rows_quarantined == sum(r["is_quarantined"] for r in held)
    (off,) = [r for r in rows(project, "remittance_claims") if r["is_quarantined"]]
    assert off["dq_failures"] == ["claim_balanced"]


def test_a_first_build_with_a_key_twice_keeps_it_once(
    workdir: Path, streamed: list[tuple[str, bool]]
) -> None:
    """The same remittance in two envelopes, both in the first build: the keys repeat, so
    the rows are not streamed; the repeats are resolved to one row per key."""
    content = (corpus() / "835" / "X221-multiple-claims-single-check.edi").read_bytes()
    land(workdir, "hospital1_week1.835", content)
    isa13 = content.split(b"*")[13]
    land(workdir, "hospital1_resent.835", content.replace(isa13, b"000000999"))
    project = make_project(workdir)
    result = project.run()
    assert result.exit_code == 0
    assert not dict(streamed)["remittance_claims"] and not dict(streamed)["claim_adjustments"]
    claims = rows(project, "remittance_claims")
    assert len(claims) == len({r["remittance_claim_key"] for r in claims}) == 9
    adjustments = rows(project, "claim_adjustments")
    assert len(adjustments) == len({r["adjustment_key"] for r in adjustments}) == 39
    (rec,) = [r for r in result.records if r.layer == "silver" and r.table == "claim_adjustments"]
    assert (rec.rows_read, rec.rows_written) == (78, 39)


DENIED = """ISA*00*          *00*          *ZZ*123456789012345*ZZ*123456789012346*250503*1705*^*00501*000010217*0*T*:~
GS*HP*1234567890*1234567981*20250503*1705*20214*X*005010X221A1~
ST*835*112234~
BPR*I*495*C*ACH*CCP*01*888999777*DA*24681012*1935665544**01*111333555*DA*144444*20250316~
TRN*1*71700666556*1935665544~
DTM*405*20250314~
N1*PR*RUSHMORE LIFE~
N3*10 SOUTH AVENUE~
N4*RAPID CITY*SD*55111~
PER*BL*JOHN WAYNE*TE*8005551212*EX*123~
N1*PE*ACME MEDICAL CENTER*XX*5544667733~
REF*TJ*777667755~
LX*1~
CLP*{claim}*4*800*0*300*12*94060555410001~
NM1*QC*1*BUDD*WILLIAM****MI*33344555510~
SVC*HC:99211*800*0~
DTM*150*20250301~
DTM*151*20250304~
CAS*PR*1*300~
CAS*CO*50*500~
LQ*HE*N386~
CLP*NOSUCHCLAIM*1*1200*495*600*12*9407779923001~
CAS*CO*A2*55~
NM1*QC*1*SETTLE*SUSAN****MI*44455666610~
SVC*HC:93555*1200*550~
DTM*150*20250310~
DTM*151*20250312~
CAS*PR*1*600~
CAS*CO*45*50~
SE*28*112234~
GE*1*20214~
IEA*1*000010217~
"""


def test_denials_carry_the_payers_reasons_and_unmatched_remittances_are_listed(
    workdir: Path,
) -> None:
    corpus()
    project = make_project(workdir)
    assert project.run().exit_code == 0
    claim_id, payer = (
        project.sql(
            "SELECT claim_id, payer FROM fact_claim WHERE NOT is_denied AND datasource = 'hospital_a' "
            "ORDER BY claim_key LIMIT 1"
        )
        .to_pylist()[0]
        .values()
    )
    land(workdir, "hospital1_denied.835", DENIED.format(claim=claim_id).encode())
    result = project.run()
    assert result.exit_code == 0, [(r.table, r.error) for r in result.failed]
    f = {
        r["patient_control_number"]: r
        for r in project.sql("SELECT * FROM fact_remittance").to_pylist()
    }
    denied, other = f[claim_id], f["NOSUCHCLAIM"]
    assert denied["is_denied"] and denied["match_method"] == "patient_control_number"
    assert denied["payer_sk"] != -1 and denied["payer"] == payer
    assert not other["is_denied"] and other["claim_key"] is None and other["payer_sk"] == -1
    # the reason: CO-50 (medical necessity), 500.00; PR-1 is the patient's share, not a denial
    reasons = project.sql(
        "SELECT reason_code, category, denied_claims, denied_amount, payer FROM mart_denials WHERE basis = '835'"
    ).to_pylist()
    assert reasons == [
        {
            "reason_code": "50",
            "category": "medical_necessity",
            "denied_claims": 1,
            "denied_amount": Decimal("500.00"),
            "payer": payer,
        }
    ]
    remark = project.sql("SELECT remark_code, level FROM remittance_remarks").to_pylist()
    assert remark == [{"remark_code": "N386", "level": "line"}]
    # recomputed by hand: 1 of 2 claims denied on first remittance; 800 of 2000 charged
    kpi = project.sql("SELECT * FROM mart_remittance_monthly").to_pylist()
    assert len(kpi) == 1
    k = kpi[0]
    assert (k["claims_adjudicated"], k["claims_denied_initial"], k["claims_denied_final"]) == (
        2,
        1,
        1,
    )
    assert k["initial_denial_rate"] == pytest.approx(0.5)
    assert k["initial_denial_rate_dollars"] == pytest.approx(800 / 2000)
    assert k["first_pass_yield"] == pytest.approx(0.5)
    assert k["denial_writeoffs"] == Decimal("800.00")
    # net patient service revenue: charges less the contractual CARCs (CO-A2 55, CO-45 50); the
    # CO-50 denial is not contractual
    assert k["net_patient_service_revenue"] == Decimal("2000.00") - Decimal("105.00")
    assert k["denial_writeoff_share_of_npsr"] == pytest.approx(800 / 1895, abs=1e-4)
    assert k["unmatched_remittances"] == 1
    exceptions = project.sql(
        "SELECT exception, claim_id FROM mart_remittance_exceptions"
    ).to_pylist()
    assert {"exception": "remittance_without_claim", "claim_id": "NOSUCHCLAIM"} in exceptions
    # the claims-file fallback no longer counts a claim the 835 covers
    fallback = (
        project.sql(
            f"SELECT count(*) FROM fact_claim c WHERE c.claim_id = '{claim_id}' AND c.is_denied"
        )
        .column(0)[0]
        .as_py()
    )
    assert fallback == 0


def test_synthetic_remittances_match_their_manifest(tmp_path: Path) -> None:
    from dataclasses import replace

    from rcmlake.synth import synthesize
    from tests.conftest import SMALL

    manifest = synthesize(
        tmp_path, replace(SMALL, remittances=True, remittance_defects=True)
    ).manifest["remittances"]
    # every file but the deliberately broken ones is one the implementation guide accepts:
    # no finding, not even a warning (CLP06 "CI" of the 837 once drew one on every claim)
    broken = {f for m in manifest.values() for f in m["broken_files"]}
    written = [f for f in (tmp_path / "landing").rglob("*.835") if f.name not in broken]
    assert written and all(not oxedi.parse_file(f).diagnostics for f in written)
    project = make_project(tmp_path)
    result = project.run()
    rejected = sorted(Path(r.source_file).name for r in result.records if r.status == "rejected")
    assert rejected == sorted(f for m in manifest.values() for f in m["broken_files"])
    assert result.exit_code == 1 and {r.status for r in result.failed} == {"rejected"}
    skipped = sorted(
        Path(r.source_file).name for r in result.records if r.status == "skipped" and r.source_file
    )
    assert skipped == sorted(f for m in manifest.values() for f in m["resent_files"])
    claims = rows(project, "remittance_claims")
    for ds, m in manifest.items():
        mine = [r for r in claims if r["datasource"] == ds]
        assert len(mine) == m["claims"], ds
        assert not [r for r in mine if r["is_quarantined"]]  # every synthetic file balances
        assert sum(r["claim_status"] == "22" for r in mine) == m["reversals"]
        ext = [r for r in mine if r["patient_control_number"].startswith("EXT-")]
        assert len(ext) == m["unmatched"] and all(r["claim_key"] is None for r in ext)
        assert str(sum(r["payment_amount"] for r in mine)) == m["paid_total"]
        # denials by CARC, recomputed from what synth wrote
        got = project.sql(
            "SELECT reason_code, sum(denied_claims) AS claims, sum(denied_amount) AS amount "
            f"FROM mart_denials WHERE basis = '835' AND datasource = '{ds}' GROUP BY 1"
        ).to_pylist()
        assert {
            r["reason_code"]: {"claims": r["claims"], "amount": str(r["amount"])} for r in got
        } == m["denied"]
    plb = rows(project, "provider_adjustments")
    assert len(plb) == sum(m["plb"] for m in manifest.values())
    # each claim's remittances numbered by payment date and key (reversals included), and the
    # initial / final denials of a month taken from its first / last one that is no reversal,
    # recomputed here from fact_remittance's rows
    facts = project.sql("SELECT * FROM fact_remittance").to_pylist()
    per_claim: dict[str, list[dict]] = {}
    for r in facts:
        per_claim.setdefault(r["claim_key"] or r["remittance_claim_key"], []).append(r)
    expected: Counter[tuple[str, object, str]] = Counter()
    for group in per_claim.values():
        group.sort(key=lambda r: (r["payment_date"], r["remittance_claim_key"]))
        assert [r["remittance_sequence"] for r in group] == list(range(1, len(group) + 1))
        kept = [r for r in group if not r["is_reversal"]]
        if kept:  # by the month of the first remittance kept, claims remitted once or more
            month = (kept[0]["datasource"], kept[0]["payment_month"])
            expected[(*month, "claims")] += 1
            expected[(*month, "unmatched")] += all(r["claim_key"] is None for r in kept)
            expected[(*month, "paid")] += sum(r["payment_amount"] for r in kept)
            expected[(*month, "contractual")] += sum(r["contractual_adjustment"] for r in kept)
        if kept and not kept[0]["is_duplicate"]:
            month = (kept[0]["datasource"], kept[0]["payment_month"])
            expected[(*month, "initial")] += kept[0]["is_denied"]
            expected[(*month, "final")] += kept[-1]["is_denied"]
            first_pass = not kept[0]["is_denied"] and kept[0]["payment_amount"] > 0
            expected[(*month, "first_pass")] += first_pass
    assert any(r["is_reversal"] for r in facts)
    assert any(len(g) > 2 and any(r["is_reversal"] for r in g) for g in per_claim.values())
    monthly = project.sql("SELECT * FROM mart_remittance_monthly").to_pylist()
    for k in monthly:
        month = (k["datasource"], k["month"])
        assert k["claims_denied_initial"] == expected[(*month, "initial")], month
        assert k["claims_denied_final"] == expected[(*month, "final")], month
        assert k["remitted_claims"] == expected[(*month, "claims")], month
        assert k["unmatched_remittances"] == expected[(*month, "unmatched")], month
        assert k["payments"] == expected[(*month, "paid")], month
        assert k["contractual_adjustments_reported"] == expected[(*month, "contractual")], month
        adjudicated = k["claims_adjudicated"]
        assert k["first_pass_yield"] == round(expected[(*month, "first_pass")] / adjudicated, 4)
    assert sum(len(g) > 1 for g in per_claim.values()) and sum(
        len(g) == 1 for g in per_claim.values()
    )  # claims remitted once and claims remitted again are both in the months above
    # duplicates (CARC 18) are counted apart and kept out of the denial rates
    kpi = project.sql(
        "SELECT sum(duplicate_claims) AS d, sum(claims_denied_initial) AS n FROM mart_remittance_monthly"
    ).to_pylist()[0]
    assert kpi["d"] == sum(
        m["denied"].get("18", {"claims": 0})["claims"] for m in manifest.values()
    )
    other = sum(v["claims"] for m in manifest.values() for c, v in m["denied"].items() if c != "18")
    assert kpi["n"] == other
    # the net collection rate now stands on the payers' contractual adjustments, and says so
    bases = (
        project.sql("SELECT DISTINCT contractual_basis FROM mart_kpi_monthly").column(0).to_pylist()
    )
    assert bases == ["payer-reported (835) where remitted, else derived"]
    reported = (
        project.sql(
            "SELECT sum(r.contractual_adjustment) FROM fact_remittance r WHERE r.claim_key IS NOT NULL"
        )
        .column(0)[0]
        .as_py()
    )
    derived_rest = (
        project.sql(
            "SELECT sum(contractual_adjustment) FROM fact_claim c "
            "WHERE NOT EXISTS (SELECT 1 FROM fact_remittance r WHERE r.claim_key = c.claim_key)"
        )
        .column(0)[0]
        .as_py()
    )
    total = (
        project.sql("SELECT sum(contractual_adjustments) FROM mart_kpi_monthly")
        .column(0)[0]
        .as_py()
    )
    assert total == reported + derived_rest
    # self-pay claims never get an 835: past the wait they are exceptions, listed
    waiting = (
        project.sql(
            "SELECT count(*) FROM mart_remittance_exceptions WHERE exception = 'claim_without_remittance'"
        )
        .column(0)[0]
        .as_py()
    )
    assert waiting > 0


def test_any_separators_line_breaks_and_many_interchanges_per_file(workdir: Path) -> None:
    x12 = corpus() / "835"
    era = (x12 / "X221-era-sample.edi").read_bytes()
    # the ISA declares the separators: '|' between elements, a newline after each '~'
    assert era[3:4] == b"*"
    land(workdir, "hospital1_pipes.835", era.replace(b"*", b"|").replace(b"~", b"~\n"))
    # two interchanges in one file
    two = (
        (x12 / "X221-tertiary-payments.edi").read_bytes()
        + b"\n"
        + (x12 / "X221-secondary-payments.edi").read_bytes()
    )
    land(workdir, "hospital1_two.835", two)
    project = make_project(workdir)
    assert project.run().exit_code == 0
    claims = by_file(rows(project, "remittance_claims"))
    assert len(claims["pipes"]) == 1 and len(claims["two"]) == 1 + 2
    payments = by_file(rows(project, "remittance_payments"))
    assert sorted(str(p["total_payment_amount"]) for p in payments["two"]) == ["1222.00", "187.50"]
    lines = by_file(rows(project, "remittance_lines"))
    assert len(lines["pipes"]) == 5


def test_carc_codes_refresh_from_a_file_as_new_versions(workdir: Path) -> None:
    from importlib import resources

    corpus()
    packaged = resources.files("rcmlake.sources.codesets").joinpath("data/carc.csv").read_text()
    project = make_project(workdir)
    assert project.run(["bronze", "silver"]).exit_code == 0
    codes = workdir / "carc.csv"
    codes.write_text(
        packaged.replace(
            "Exact duplicate claim/service,duplicate,1995-01-01,",
            "Exact duplicate claim/service,duplicate,1995-01-01,2030-12-31",
        )
    )
    project = make_project(
        workdir,
        codesets={"icd": {"mode": "packaged"}, "npi": {"mode": "off"}, "carc_file": "carc.csv"},
    )
    assert project.run(["bronze", "silver"]).exit_code == 0
    versions = sorted(
        (r for r in rows(project, "carc_codes") if r["carc_code"] == "18"),
        key=lambda r: r["effective_from"],
    )
    assert [str(r["stop_date"]) for r in versions] == ["None", "2030-12-31"]
    assert [r["is_current"] for r in versions] == [False, True]
    assert len(rows(project, "carc_codes")) == packaged.count("\n") - 1 + 1  # one new version
    # unchanged file: nothing new
    again = project.run(["bronze"])
    assert {r.status for r in again.records if r.table == "carc_codes"} == {"no_change"}


def test_a_line_paid_below_the_payers_usual_amount_is_an_underpayment(workdir: Path) -> None:
    content = (corpus() / "835" / "X221-multiple-claims-single-check.edi").read_bytes()
    # the first of seven D0120 lines paid 15 instead of 25 (CAS, CLP04 and BPR02 follow, so it balances)
    changed = (
        content.replace(
            b"SVC*AD:D0120*46*25~DTM*472*20140324~CAS*CO*131*21",
            b"SVC*AD:D0120*46*15~DTM*472*20140324~CAS*CO*131*31",
            1,
        )
        .replace(b"CLP*7722337*1*226*132**", b"CLP*7722337*1*226*122**", 1)
        .replace(b"BPR*I*810.8*", b"BPR*I*800.8*", 1)
    )
    assert changed.count(b"D0120*46*15") == 1
    land(workdir, "hospital1_under.835", changed)
    project = make_project(workdir)
    assert project.run().exit_code == 0
    assert not [
        r
        for e in ("remittance_claims", "remittance_lines", "remittance_payments")
        for r in rows(project, e)
        if r["is_quarantined"]
    ]
    under = project.sql(
        "SELECT procedure_code, payment_amount, usual_allowed, usual_basis_lines, shortfall FROM mart_underpayments"
    ).to_pylist()
    # the payer's median allowed (AMT*B6) for D0120 is 25; paid 15 + no patient share < 25 × 0.9
    assert under == [
        {
            "procedure_code": "D0120",
            "payment_amount": Decimal("15.00"),
            "usual_allowed": Decimal("25.00"),
            "usual_basis_lines": 7,
            "shortfall": Decimal("10.00"),
        }
    ]


def _remit(
    trace: str, day: str, claim: str, status: str, charge: str, paid: str, service: str
) -> bytes:
    """A one-claim 835: ``paid`` of ``charge``, the rest denied as CO-50 (medical necessity)."""
    cas = "" if paid == charge else f"CAS*CO*50*{Decimal(charge) - Decimal(paid)}~"
    body = (
        f"ST*835*0001~BPR*I*{paid}*C*ACH*CCP*01*888999777*DA*24681012*1935665544**01*111333555*DA*144444*{day}~"
        f"TRN*1*{trace}*1935665544~DTM*405*{day}~N1*PR*RUSHMORE LIFE~N3*10 SOUTH AVENUE~"
        "N4*RAPID CITY*SD*55111~PER*BL*JOHN WAYNE*TE*8005551212~N1*PE*ACME MEDICAL CENTER*XX*5544667733~"
        f"LX*1~CLP*{claim}*{status}*{charge}*{paid}**12*PCN{trace}~NM1*QC*1*BUDD*WILLIAM****MI*33344555510~"
        f"DTM*232*{service}~SVC*HC:99211*{charge}*{paid}~DTM*472*{service}~{cas}"
    )
    count = body.count("~") + 1
    return (
        "ISA*00*          *00*          *ZZ*123456789012345*ZZ*123456789012346*250503*1705*^*00501*"
        f"{trace[-9:]:0>9}*0*T*:~GS*HP*1234567890*1234567981*{day}*1705*1*X*005010X221A1~"
        f"{body}SE*{count}*0001~GE*1*1~IEA*1*{trace[-9:]:0>9}~"
    ).encode()


def test_fallback_match_and_a_denial_resolved_by_a_later_payment(workdir: Path) -> None:
    corpus()
    project = make_project(workdir)
    assert project.run().exit_code == 0
    claim = project.sql(
        "SELECT claim_key, billed_amount, service_date FROM fact_claim WHERE datasource = 'hospital_a' "
        "AND billed_amount > 0 QUALIFY count(*) OVER (PARTITION BY service_date, billed_amount) = 1 "
        "ORDER BY claim_key LIMIT 1"
    ).to_pylist()[0]
    charge, service = f"{claim['billed_amount']:.2f}", claim["service_date"].strftime("%Y%m%d")
    # the payer knows the claim by another number: matched by service date and amount
    land(
        workdir,
        "hospital1_first.835",
        _remit("000000101", "20250310", "ACCT-77", "4", charge, "0.00", service),
    )
    land(
        workdir,
        "hospital1_second.835",
        _remit("000000102", "20250402", "ACCT-77", "1", charge, charge, service),
    )
    assert project.run().exit_code == 0
    f = project.sql(
        "SELECT claim_key, match_method, is_denied, remittance_sequence FROM fact_remittance ORDER BY payment_date"
    ).to_pylist()
    assert [(r["claim_key"], r["match_method"]) for r in f] == [
        (claim["claim_key"], "service_date_and_amount")
    ] * 2
    assert [(r["is_denied"], r["remittance_sequence"]) for r in f] == [(True, 1), (False, 2)]
    k = project.sql("SELECT * FROM mart_remittance_monthly").to_pylist()[0]
    assert (k["claims_denied_initial"], k["claims_denied_final"], k["first_pass_yield"]) == (
        1,
        0,
        0,
    )
    assert k["avg_days_to_resolution"] == 23  # 10 March to 2 April


def test_segments_cut_from_the_bytes_equal_oxedis_own(tmp_path: Path) -> None:
    """The raw segments table is cut from the file's bytes by numpy (2.5M segments in one
    synthetic month); it must equal oxedi's segments, one by one, in every layout."""
    import oxedi

    from rcmlake.sources.x835 import _cut, _listed, _segment_table

    files = sorted((corpus() / "835").iterdir())
    one = files[0].read_bytes()
    layouts = {
        "newlines.edi": one.replace(b"~", b"~\n"),
        "crlf.edi": one.replace(b"~", b"~\r\n"),
        "trailing.edi": one + b"\n",
        "latin1.edi": one.replace(b"N1*PR*", "N1*PR*CAFÉ ".encode("latin-1"), 1),
    }
    for name, data in layouts.items():
        (tmp_path / name).write_bytes(data)
    checked = 0
    for path in [*files, *sorted(tmp_path.iterdir())]:
        try:
            doc = oxedi.parse_file(path).document
        except oxedi.ParseError:
            continue
        assert _segment_table(doc).equals(_listed(doc)), path.name
        checked += 1
    assert checked >= len(files) + 3
    # the byte cut applies to plain files (the fallback lists segments one by one)
    doc = oxedi.parse_file(files[0]).document
    assert _cut(doc.write(), len(doc), doc.delimiters.segment, doc.delimiters.element) is not None
    doc = oxedi.parse_file(tmp_path / "newlines.edi").document
    assert _cut(doc.write(), len(doc), b"~", b"*") is None


def test_segment_ids_read_from_their_first_bytes_equal_the_ids_searched_for() -> None:
    """Ids are read from the bytes at offsets 2 and 3 when every id is two or three ASCII
    characters; any other id (one or four characters, a separator first, text that is not
    ASCII, a segment with no separator) makes the cut search every separator instead, and
    both ways give each segment's text up to its first separator."""
    import numpy as np
    import pyarrow as pa

    from rcmlake.sources.x835 import _cut, _ids, _searched_ids

    def ids(text: str) -> tuple[list[str], list[str]]:
        data = text.encode()
        table = _cut(data, text.count("~"), b"~", b"*")
        assert table is not None, text
        buf = np.frombuffer(data, np.uint8)
        ends = np.flatnonzero(buf == ord("~")) + 1
        starts = np.concatenate([[0], ends[:-1]])
        raw = pa.array([p + "~" for p in text.split("~")[:-1]])
        searched = _searched_ids(buf, starts, ends, ord("*")).to_pylist()
        assert _ids(buf, raw, starts, ends, ord("*"), ord("~")).to_pylist() == searched
        return table["segment_id"].to_pylist(), searched

    plain = "ISA*00~GS*HP~ST*835~CLP*A*1~SE*4~"
    assert ids(plain) == (["ISA", "GS", "ST", "CLP", "SE"],) * 2
    for odd, expected in [
        ("ISA*00~A*1~SE*2~", ["ISA", "A", "SE"]),
        ("ISA*00~ABCD*1~", ["ISA", "ABCD"]),
        ("ISA*00~*X~", ["ISA", ""]),
        ("ISA*00~ÉT*1~", ["ISA", "ÉT"]),
        ("ISA*00~SE~", ["ISA", "SE"]),
        ("ISA*00~ABC~", ["ISA", "ABC"]),
        ("ISA*00~LONGER~", ["ISA", "LONGER"]),
    ]:
        assert ids(odd) == (expected, expected), odd


def test_an_835_parse_makes_room_in_the_engines_memory_limit(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While an 835 is parsed and its parts written, the engine bronze shares the process
    with gives up the parse's estimated memory (40 bytes per byte of file) and gets it back
    afterwards, so the EMR loads beside it spill instead of adding to it."""
    import rcmlake.layers.bronze as bronze

    sample = corpus() / "835" / "X221-multiple-claims-single-check.edi"
    land(workdir, "hospital1_big.835", sample.read_bytes() * 2000)  # about 7 MB
    size = (workdir / "landing" / "remittances" / "hospital1_big.835").stat().st_size
    project = make_project(workdir, run={"memory_limit": "2GB"})
    during: list[int] = []
    parse = bronze.read_835

    def watched(path: Path) -> object:
        with project.local.session() as s:
            during.append(size_bytes(s.scalar("SELECT current_setting('memory_limit')")))
        return parse(path)

    monkeypatch.setattr(bronze, "read_835", watched)
    result = project.run(["bronze"])
    assert result.exit_code == 0, [(r.table, r.error) for r in result.failed]
    # 2 GB less 40 bytes per byte of the file (current_setting shows 0.1 GiB, truncated)
    [limit] = during
    assert abs(limit - (2 * 10**9 - bronze.X835_BYTES_PER_BYTE * size)) < 0.1 * 2**30
    assert size > 5_000_000 and limit < 1.8 * 10**9
    with project.local.session() as s:
        assert s.scalar("SELECT current_setting('memory_limit')") == "1.8 GiB"
    claims = project.lake.read("bronze/hospital_a/remittances_claims")
    assert claims.num_rows == 9 * 2000
