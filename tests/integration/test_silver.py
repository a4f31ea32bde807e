"""Silver: CDM across hospitals, quarantine equal to the generator's manifest, SCD2, idempotence."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import duckdb
import pyarrow.compute as pc
import pytest
import yaml

from rcmlake.demo import demo_config, hospital_names, prepare
from rcmlake.errors import ConfigError
from rcmlake.layers.silver import silver_path
from rcmlake.project import Project
from rcmlake.synth import SynthSpec, synthesize
from tests.conftest import make_project

ENTITIES = ("patients", "encounters", "transactions", "claims")
DEMO_B = yaml.safe_load(demo_config())["silver"]["mappings"]["hospital_b"]["patients"]


def silver(project: Project, entity: str):  # type: ignore[no-untyped-def]
    return project.lake.read(silver_path(entity))


def quarantine_counts(project: Project) -> dict:
    """datasource -> entity -> rule -> quarantined rows (current versions only)."""
    out: dict = {}
    con = duckdb.connect()
    for entity in ENTITIES:
        con.register("t", project.lake.dataset(silver_path(entity)))
        current = "is_current" if entity == "patients" else "true"
        for ds, rule, n in con.execute(
            f"SELECT datasource, r, count(*) FROM (SELECT datasource, unnest(dq_failures) r FROM t "
            f"WHERE is_quarantined AND {current}) GROUP BY ALL"
        ).fetchall():
            out.setdefault(ds, {}).setdefault(entity, {})[rule] = n
    return out


def expected(manifest: dict) -> dict:
    return {
        ds: {
            e: {r: n for r, n in rules.items() if n}
            for e, rules in ents.items()
            if any(rules.values())
        }
        for ds, ents in manifest["expected_quarantine"].items()
    }


def manifest(workdir: Path) -> dict:
    return json.loads((workdir / "synth_manifest.json").read_text())


@pytest.fixture
def built(workdir: Path) -> Project:
    project = make_project(workdir)
    result = project.run(["bronze", "silver"])
    assert result.exit_code == 0, [(r.table, r.error) for r in result.failed]
    return project


def test_quarantine_counts_equal_the_manifest_exactly(built: Project, workdir: Path) -> None:
    assert quarantine_counts(built) == expected(manifest(workdir))
    # and the quarantined rows are exactly the injected ones
    tx = silver(built, "transactions")
    bad = tx.filter(pc.and_(tx["is_quarantined"], pc.equal(tx["datasource"], "hospital_a")))
    defects = manifest(workdir)["defects"]["hospital_a"]
    injected = {i for k, ids in defects.items() if k.startswith("transaction_") for i in ids}
    assert set(bad["source_transaction_id"].to_pylist()) == injected


def test_keys_never_collide_between_hospitals(built: Project) -> None:
    p = silver(built, "patients")
    a = set(pc.filter(p["source_patient_id"], pc.equal(p["datasource"], "hospital_a")).to_pylist())
    b = set(pc.filter(p["source_patient_id"], pc.equal(p["datasource"], "hospital_b")).to_pylist())
    shared = (a & b) - {None}
    assert len(shared) > 100  # both hospitals number patients HOSP1-000001…
    keys = p["patient_key"].to_pylist()
    assert "HOSP1-000001-hospital_a" in keys and "HOSP1-000001-hospital_b" in keys
    enc = silver(built, "encounters")
    assert all(
        k.endswith("-" + ds)
        for k, ds in zip(enc["patient_key"].to_pylist(), enc["datasource"].to_pylist(), strict=True)
    )


def test_cdm_types_and_vocabularies(built: Project) -> None:
    tx = silver(built, "transactions")
    types = {f.name: str(f.type) for f in tx.schema}
    assert types["amount"] == types["paid_amount"] == "decimal128(18, 2)"
    assert (
        types["service_date"] == "date32[day]"
        and types["source_modified_at"] == "timestamp[us, tz=UTC]"
    )
    assert set(tx["payer_type"].to_pylist()) == {"medicare", "medicaid", "commercial", "self_pay"}
    assert all(len(c) == 5 for c in tx["procedure_code"].to_pylist())
    p = silver(built, "patients")
    assert set(p["gender"].to_pylist()) <= {"male", "female", "unknown"}
    assert "NULL" not in p["middle_name"].to_pylist() and None in p["middle_name"].to_pylist()
    c = silver(built, "claims")
    well_formed = c.filter(pc.is_null(c["malformed_line"]))
    assert set(well_formed["payer_type"].to_pylist()) == {
        "medicare",
        "medicaid",
        "commercial",
        "self_pay",
    }
    assert set(c.filter(pc.is_valid(c["malformed_line"]))["payer_type"].to_pylist()) == {"other"}
    assert str(c.schema.field("claim_amount").type) == "decimal128(18, 2)"
    prov = silver(built, "providers")
    assert all(len(n) == 10 for n in prov["npi"].to_pylist())


def test_rerun_with_nothing_new_changes_nothing(built: Project) -> None:
    before = {
        e: built.lake.table(silver_path(e)).version()
        for e in (*ENTITIES, "providers", "departments")
    }
    result = built.run(["bronze", "silver"])
    assert {r.status for r in result.records if r.layer == "silver"} == {"no_change"}
    after = {e: built.lake.table(silver_path(e)).version() for e in before}
    assert after == before


def test_scd2_history_across_an_update(built: Project, workdir: Path) -> None:
    con = sqlite3.connect(workdir / "sources" / "hospital_a.db")
    before = dict(
        con.execute(
            "SELECT PatientID, Address || '|' || PhoneNumber || '|' || ModifiedDate FROM patients WHERE PatientID IS NOT NULL"
        ).fetchall()
    )
    con.close()
    synthesize(workdir, update=True)
    con = sqlite3.connect(workdir / "sources" / "hospital_a.db")
    after = dict(
        con.execute(
            "SELECT PatientID, Address || '|' || PhoneNumber || '|' || ModifiedDate FROM patients WHERE PatientID IS NOT NULL"
        ).fetchall()
    )
    con.close()
    moved = {pid for pid in before if pid in after and after[pid] != before[pid]}
    new = set(after) - set(before)
    assert moved and new
    built.run(["bronze", "silver"])
    p = silver(built, "patients").filter(
        pc.equal(silver(built, "patients")["datasource"], "hospital_a")
    )
    rows = {}
    for r in p.to_pylist():
        rows.setdefault(r["source_patient_id"], []).append(r)
    for pid in moved:
        versions = sorted(rows[pid], key=lambda r: r["effective_from"])
        assert len(versions) == 2, pid
        old, cur = versions
        address, phone, modified = after[pid].split("|")
        assert (cur["address"], cur["phone"], cur["is_current"], cur["effective_to"]) == (
            address,
            phone,
            True,
            None,
        )
        assert str(cur["effective_from"].date()) == modified
        assert old["is_current"] is False and old["effective_to"] == cur["effective_from"]
        assert old["address"] == before[pid].split("|")[0]
    # two source rows for one patient at one time are both kept, both quarantined
    duplicated = set(manifest(workdir)["defects"]["hospital_a"]["patient_duplicate_key"])
    assert duplicated
    for pid in duplicated:
        assert len(rows[pid]) == 2 and sum(r["is_current"] for r in rows[pid]) == 1, pid
        assert all(r["dq_failures"] == ["unique_key"] for r in rows[pid]), pid
    for pid in set(after) - moved - new - duplicated:
        assert len(rows[pid]) == 1 and rows[pid][0]["is_current"], pid
    for pid in new:
        assert len(rows[pid]) == 1
    assert quarantine_counts(built) == expected(manifest(workdir))


def test_corrected_rows_leave_quarantine(built: Project, workdir: Path) -> None:
    upd = synthesize(workdir, update=True).manifest
    fixed_tx = upd["corrected"]["hospital_a"]["transaction_negative_amount"]
    fixed_claims = upd["corrected"]["hospital_a"]["claim_negative_amount"]
    tx = silver(built, "transactions").filter(
        pc.equal(silver(built, "transactions")["datasource"], "hospital_a")
    )
    assert all(
        tx.filter(pc.is_in(tx["source_transaction_id"], pc.cast(fixed_tx, "string")))[
            "is_quarantined"
        ].to_pylist()
    )
    built.run(["bronze", "silver"])
    tx = silver(built, "transactions").filter(
        pc.equal(silver(built, "transactions")["datasource"], "hospital_a")
    )
    now = tx.filter(pc.is_in(tx["source_transaction_id"], pc.cast(fixed_tx, "string")))
    assert now.num_rows == len(fixed_tx) and not any(now["is_quarantined"].to_pylist())
    assert all(a > 0 for a in now["amount"].to_pylist())
    claims = silver(built, "claims").filter(
        pc.equal(silver(built, "claims")["datasource"], "hospital_a")
    )
    now = claims.filter(pc.is_in(claims["source_claim_id"], pc.cast(fixed_claims, "string")))
    assert now.num_rows == len(fixed_claims) and not any(now["is_quarantined"].to_pylist())
    # the quarantined state remains in Delta history
    old = built.lake.table(silver_path("transactions"), version=0).to_pyarrow_table()
    was = old.filter(
        pc.and_(
            pc.equal(old["datasource"], "hospital_a"),
            pc.is_in(old["source_transaction_id"], pc.cast(fixed_tx, "string")),
        )
    )
    assert all(was["is_quarantined"].to_pylist())
    assert quarantine_counts(built) == expected(manifest(workdir))


def test_third_hospital_by_config_alone(workdir: Path) -> None:
    """Hospital C names every column differently; only rcmlake.yaml changes."""
    src = workdir / "sources" / "hospital_a.db"
    dst = workdir / "sources" / "hospital_c.db"
    dst.write_bytes(src.read_bytes())
    renames = {
        "patients": {
            "PatientID": "mrn",
            "FirstName": "given_name",
            "LastName": "family_name",
            "MiddleName": "middle",
            "PhoneNumber": "phone_no",
            "DOB": "birth_date",
            "Address": "street",
            "ModifiedDate": "changed_on",
        },
        "encounters": {"EncounterID": "visit_no", "PatientID": "mrn", "EncounterDate": "visit_on"},
        "transactions": {
            "TransactionID": "line_no",
            "Amount": "charge",
            "PaidAmount": "paid",
            "ModifiedDate": "changed_on",
        },
    }
    con = sqlite3.connect(dst)
    for table, cols in renames.items():
        for old, new in cols.items():
            con.execute(f'ALTER TABLE {table} RENAME COLUMN "{old}" TO "{new}"')
    con.commit()
    con.close()
    make_project(workdir)
    raw = yaml.safe_load((workdir / "rcmlake.yaml").read_text())
    raw["sources"]["hospital_c"] = {
        "type": "sqlite",
        "url": "sqlite:///sources/hospital_c.db",
        "tables": [
            {"name": "departments", "load_type": "full"},
            {"name": "providers", "load_type": "full"},
            {"name": "patients", "load_type": "incremental", "watermark": "changed_on"},
            {"name": "encounters", "load_type": "incremental", "watermark": "ModifiedDate"},
            {"name": "transactions", "load_type": "incremental", "watermark": "changed_on"},
        ],
    }
    raw["silver"]["mappings"]["hospital_c"] = {
        "patients": {
            "source_patient_id": "mrn",
            "first_name": "given_name",
            "last_name": "family_name",
            "middle_name": "middle",
            "phone": "phone_no",
            "date_of_birth": "birth_date",
            "address": "street",
            "source_modified_at": "changed_on",
        },
        "encounters": {
            "source_encounter_id": "visit_no",
            "source_patient_id": "mrn",
            "encounter_date": "visit_on",
        },
        "transactions": {
            "source_transaction_id": "line_no",
            "amount": "charge",
            "paid_amount": "paid",
            "source_modified_at": "changed_on",
        },
    }
    (workdir / "rcmlake.yaml").write_text(yaml.safe_dump(raw))
    project = Project.load(workdir / "rcmlake.yaml")
    result = project.run(["bronze", "silver"])
    assert result.exit_code == 0, [(r.table, r.error) for r in result.failed]
    for entity in ("patients", "encounters", "transactions"):
        data = silver(project, entity)
        a = data.filter(pc.equal(data["datasource"], "hospital_a"))
        c = data.filter(pc.equal(data["datasource"], "hospital_c"))
        assert c.num_rows == a.num_rows > 0, entity
        key = {
            "patients": "patient_key",
            "encounters": "encounter_key",
            "transactions": "transaction_key",
        }[entity]
        assert all(k.endswith("-hospital_c") for k in c[key].to_pylist())
        assert pc.sum(c["is_quarantined"]).as_py() == pc.sum(a["is_quarantined"]).as_py()
    tx = silver(project, "transactions")
    a_amounts = sorted(
        x for x in tx.filter(pc.equal(tx["datasource"], "hospital_a"))["amount"].to_pylist()
    )
    c_amounts = sorted(
        x for x in tx.filter(pc.equal(tx["datasource"], "hospital_c"))["amount"].to_pylist()
    )
    assert a_amounts == c_amounts


def test_mapping_mistakes_are_clear(workdir: Path) -> None:
    # SQL in the config is checked against the models before any work
    typo = {"name": "typo", "table": "transactions", "predicate": "amountt > 0"}
    for silver_cfg, message in [
        ({"rules": [typo]}, r"rule 'typo' on transactions: Binder Error: .*amountt"),
        (
            {"rules": [{**typo, "predicate": "amount >"}]},
            r"rule 'typo' on transactions: Parser Error",
        ),
        (
            {"mappings": {"hospital_b": {"patients": {**DEMO_B, "first_name": "upper(F_Name"}}}},
            r"silver.mappings.hospital_b.patients.first_name: mapping 'upper\(F_Name' is not valid SQL",
        ),
    ]:
        project = make_project(workdir, silver=silver_cfg)
        with pytest.raises(ConfigError, match=message):
            project.run()
        assert project.lake.table("_audit/loads") is None  # nothing ran
    project = make_project(
        workdir,
        silver={
            "mappings": {"hospital_b": {"patients": {**DEMO_B, "first_name": "upper(Vorname)"}}}
        },
    )
    failed = {r.table: r.error for r in project.run(["bronze", "silver"]).failed}
    assert (
        "hospital_b.patients: the mapping of first_name ('upper(Vorname)') does not bind"
        in failed["patients"]
    )
    project = make_project(
        workdir, silver={"mappings": {"hospital_b": {"patients": {"patient_name": "F_Name"}}}}
    )
    with pytest.raises(
        ConfigError,
        match=r"unknown CDM column\(s\) \['patient_name'\] for patients; known: source_patient_id",
    ):
        project.run(["bronze", "silver"])
    b = {**DEMO_B, "first_name": "Vorname"}
    project = make_project(workdir, silver={"mappings": {"hospital_b": {"patients": b}}})
    result = project.run(["bronze", "silver"])
    failed = {r.table: r.error for r in result.failed}
    assert "mapped column 'Vorname' is not in bronze" in failed["patients"]
    assert result.exit_code == 1


def test_rules_are_config(workdir: Path) -> None:
    project = make_project(
        workdir,
        silver={
            "mappings": {"hospital_b": {"patients": DEMO_B}},
            "rules": [
                {
                    "name": "big_charge",
                    "table": "transactions",
                    "predicate": "amount < 20000",
                    "severity": "warn",
                }
            ],
            "disable_rules": ["icd_code_known"],
        },
    )
    assert project.run(["bronze", "silver"]).exit_code == 0
    tx = silver(project, "transactions")
    warned = tx.filter(pc.greater(pc.list_value_length(tx["dq_warnings"]), 0))
    assert warned.num_rows > 0 and all(
        w == ["big_charge"] for w in warned["dq_warnings"].to_pylist()
    )
    assert all(a >= 20000 for a in warned["amount"].to_pylist())
    assert "icd_code_known" not in {r for rs in tx["dq_failures"].to_pylist() for r in rs}
    with pytest.raises(ConfigError, match=r"unknown rule 'icd_known'; known: .*icd_code_known"):
        make_project(workdir, silver={"disable_rules": ["icd_known"]}).run(["silver"])


def test_touching_one_percent_changes_exactly_those_rows(workdir: Path) -> None:
    """`synth --touch 0.01` edits the transactions whose ids end in 00; the incremental run
    after it extracts exactly those and merges each as a change."""
    from rcmlake.synth import touch

    project = make_project(workdir)
    assert project.run().exit_code == 0
    before = {}
    for ds in ("hospital_a", "hospital_b"):
        con = sqlite3.connect(workdir / "sources" / f"{ds}.db")
        before[ds] = dict(
            con.execute(
                "SELECT TransactionID, PaidAmount FROM transactions WHERE TransactionID LIKE '%00'"
            ).fetchall()
        )
        con.close()
    edited = touch(workdir, 0.01)
    assert edited == {ds: len(ids) for ds, ids in before.items()}
    assert (
        0
        < sum(edited.values())
        <= 0.012 * sum(r["transactions"] for r in manifest(workdir)["rows"].values())
    )
    result = project.run()
    assert result.exit_code == 0
    loads = {
        r.datasource: r.rows_written
        for r in result.records
        if r.layer == "bronze" and r.table == "transactions"
    }
    assert loads == edited
    tx = silver(project, "transactions")
    for ds, ids in before.items():
        rows = {
            r["source_transaction_id"]: r
            for r in tx.to_pylist()
            if r["datasource"] == ds and r["source_transaction_id"] in ids
        }
        assert set(rows) == set(ids)
        for tid, paid in ids.items():
            got = float(rows[tid]["paid_amount"])
            assert got == pytest.approx(paid + 0.01) or got == pytest.approx(paid)
            assert got <= float(rows[tid]["amount"]) + 1e-9


def test_the_newest_row_per_key_and_exact_repeats_on_hand_made_rows() -> None:
    """The dedupe and the newest-row pick run their windows and aggregates only over keys
    that repeat; every ordering rule still holds on rows made to exercise it."""
    from rcmlake.engines.duckdb import DuckDBEngine
    from rcmlake.layers.silver import _latest, window_repeats

    rows = """
        SELECT * FROM (VALUES
            ('k1', NULL::TIMESTAMP, 'h5', 'b1'),                 -- NULL source time sorts last
            ('k1', TIMESTAMP '2025-01-01', 'h3', 'b1'),
            ('k1', TIMESTAMP '2025-01-02', 'h9', 'b1'),
            ('k1', TIMESTAMP '2025-01-02', 'h2', 'b2'),          -- same time, smaller hash wins
            ('k2', NULL::TIMESTAMP, 'h7', 'b1'),                 -- only NULL times: smallest hash
            ('k2', NULL::TIMESTAMP, 'h4', 'b1'),
            ('k3', TIMESTAMP '2025-03-01', 'h1', 'b1'),          -- alone: passes as it is
            ('k4', TIMESTAMP '2025-01-01', 'h8', 'b2'),          -- an exact repeat of a later batch
            ('k4', TIMESTAMP '2025-01-01', 'h8', 'b1')
        ) AS t(k, source_modified_at, _row_hash, _batch_id)"""
    with DuckDBEngine().session() as s:
        s.materialize("modeled", rows)
        w = "PARTITION BY k, source_modified_at ORDER BY _row_hash, _batch_id"
        whole = f"{w} ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING"
        window_repeats(
            s,
            "deduped",
            "modeled",
            ["k", "source_modified_at"],
            f"""SELECT k, source_modified_at, _row_hash, _batch_id, _lo <> _hi AS _conflict FROM (
                    SELECT *, lag(_row_hash) OVER ({w}) AS _prev,
                           first_value(_row_hash) OVER ({whole}) AS _lo,
                           last_value(_row_hash) OVER ({whole}) AS _hi
                    FROM {{rows}}) AS r WHERE _prev IS NULL OR _prev <> _row_hash""",
            "false AS _conflict",
        )
        deduped = s.sql(
            "SELECT k, _row_hash, _batch_id, _conflict FROM deduped ORDER BY k, _row_hash"
        ).to_pylist()
        assert [(r["k"], r["_row_hash"], r["_batch_id"], r["_conflict"]) for r in deduped] == [
            ("k1", "h2", "b2", True),  # two contents at one key and time: both kept, flagged
            ("k1", "h3", "b1", False),
            ("k1", "h5", "b1", False),
            ("k1", "h9", "b1", True),
            ("k2", "h4", "b1", True),
            ("k2", "h7", "b1", True),
            ("k3", "h1", "b1", False),
            ("k4", "h8", "b1", False),  # the repeat of the smallest batch id is kept
        ]
        s.materialize("checked", "SELECT * FROM deduped")
        _latest(s, "k")
        latest = s.sql("SELECT k, _row_hash FROM latest ORDER BY k").to_pylist()
        assert [(r["k"], r["_row_hash"]) for r in latest] == [
            ("k1", "h2"),
            ("k2", "h4"),
            ("k3", "h1"),
            ("k4", "h8"),
        ]


def test_four_hospitals_each_land_with_their_own_layout_and_exact_quarantine(
    tmp_path: Path,
) -> None:
    """``--hospitals 4``: the config follows the set (hospital B's patient columns at B and
    D, files by hospital number), and every hospital's quarantine equals its manifest."""
    spec = SynthSpec(seed=11, transactions=900, months=3, datasources=hospital_names(4))
    assert prepare(tmp_path, spec)
    project = Project.load(tmp_path / "rcmlake.yaml")
    result = project.run()
    failed = [r for r in result.failed if r.status != "rejected"]  # the broken 835s on purpose
    assert not failed, [(r.table, r.error) for r in failed]
    want = manifest(tmp_path)
    assert quarantine_counts(project) == expected(want)
    assert set(expected(want)) == {"hospital_a", "hospital_b", "hospital_c", "hospital_d"}
    con = duckdb.connect()
    con.register("t", project.lake.dataset(silver_path("transactions")))
    rows = dict(con.execute("SELECT datasource, count(*) FROM t GROUP BY 1").fetchall())
    held = {ds: r["transactions"] for ds, r in want["rows"].items()}
    # one row per source key: a key the source holds twice is one row, quarantined
    dup = {ds: len(d["transaction_duplicate_key"]) for ds, d in want["defects"].items()}
    assert rows == {ds: held[ds] - dup[ds] for ds in held}
    con.register("p", project.lake.dataset(silver_path("patients")))
    named = con.execute(
        "SELECT datasource, count(*) FROM p WHERE is_current AND last_name IS NOT NULL GROUP BY 1"
    ).fetchall()
    assert {ds for ds, n in named if n > 0} == set(held)  # layout B mapped at B and D


EDGE_CLAIMS = [
    # CLAIM000002 again, newer than every monthly file's row, with a NULL source time (older
    # than any time: left out) and an older version that fails a rule (superseded: never checked)
    ("CLAIM000002", "2025-01-03", "266.02", "2099-01-01"),
    ("CLAIM000002", "2025-01-03", "266.02", ""),
    ("CLAIM000002", "2025-01-03", "-5.00", "2025-01-04"),
    # two contents at one key and time (the newest): both stay, as a conflict
    ("CLAIM900001", "2025-01-05", "100.00", "2025-02-01"),
    ("CLAIM900001", "2025-01-05", "101.00", "2025-02-01"),
    ("CLAIM900001", "2025-01-05", "99.00", "2025-01-20"),
    # only NULL source times: every row stays for the newest-row pick
    ("CLAIM900002", "2025-01-05", "10.00", ""),
    ("CLAIM900002", "2025-01-05", "11.00", ""),
    # no claim id: keyed by the row hash, which the narrow pass does not compute
    ("", "2025-01-05", "12.00", "2025-02-01"),
    ("", "2025-01-05", "12.00", "2025-02-01"),
    ("", "2025-01-05", "13.00", "2025-02-02"),
]


def claims_file(header: str, claims: list[tuple[str, str, str, str]]) -> str:
    """An insurer claims file of ``claims`` (claim id, claim date, amount, modified date)."""
    lines = [header] + [
        f'"{cid}","TRANS000002","HOSP1-000044","ENC000002","H1-PROV0021","DEPT009","2025-01-01",'
        f'"{claim_date}","Aetna","{amount}","0","Denied","Private","0","0","0","2025-01-03","{mod}"'
        for cid, claim_date, amount, mod in claims
    ]
    return "\n".join(lines) + "\n"


def test_older_versions_left_out_before_the_rules_change_nothing_written(
    tmp_path: Path,
    synth_template: Path,
    monkeypatch: pytest.MonkeyPatch,
    left_out: list[tuple[str, bool]],
) -> None:
    """Claims come again in every monthly file: silver leaves each key's older rows out
    before the rules and the repeats search (``_newest_rows``). Built with that forced on
    and with it off, from the same files plus edge rows (NULL times, ties at the newest
    time, older versions that fail a rule, keys that fall back to the row hash), silver
    claims hold the same rows and the run counts the same."""
    from rcmlake.layers import silver as layer

    header = (synth_template / "landing/claims/hospital1_claims_2025_01.csv").read_text()
    header = header.splitlines()[0]
    spy = layer._newest_rows  # the fixture's, recording what it left out
    ways = {"on": spy, "off": lambda s, c, m: layer.Newest(False, None)}
    projects: dict[str, Project] = {}
    for name in ways:
        work = tmp_path / name
        shutil.copytree(synth_template, work)
        (work / "landing/claims/hospital1_claims_2025_05.csv").write_text(
            claims_file(header, EDGE_CLAIMS)
        )
        projects[name] = make_project(work)

    def run_both() -> dict[str, tuple[list, tuple[int, int, int]]]:
        built = {}
        for name, newest in ways.items():
            monkeypatch.setattr(layer, "LEAVE_OUT_SHARE", 0.0)  # however few the repeats
            monkeypatch.setattr(layer, "_newest_rows", newest)
            result = projects[name].run(["bronze", "silver"])
            assert result.exit_code == 0
            (rec,) = [r for r in result.records if r.layer == "silver" and r.table == "claims"]
            con = duckdb.connect()
            con.register("claims", projects[name].lake.dataset(silver_path("claims")))
            held = con.execute(
                "SELECT * EXCLUDE (_batch_id, _updated_at) FROM claims ORDER BY ALL"
            ).fetchall()
            built[name] = (held, (rec.rows_read, rec.rows_written, rec.rows_quarantined))
        return built

    built = run_both()
    assert ("claims", True) in left_out
    assert built["on"] == built["off"]
    held, (read, written, _) = built["on"]
    staged = sum(
        len(f.read_text().splitlines()) - 1 for f in (synth_template / "landing/claims").glob("*")
    )
    assert read == staged + len(EDGE_CLAIMS) and written == len(held)
    edge = {
        (r["claim_id"], str(r["claim_amount"])): (r["dq_failures"], r["source_modified_at"])
        for r in silver(projects["on"], "claims").to_pylist()
        if r["datasource"] == "hospital_a"
        and r["claim_id"] in (None, "CLAIM000002", "CLAIM900001", "CLAIM900002")
    }
    assert edge[("CLAIM000002", "266.02")][1].year == 2099  # the newest, alone
    assert [k for k in edge if k[0] == "CLAIM000002"] == [("CLAIM000002", "266.02")]
    # the tie at the newest time: one row kept, flagged as a conflict
    ((_, tie),) = [(k, v) for k, v in edge.items() if k[0] == "CLAIM900001"]
    assert tie[0] == ["unique_key"]
    assert len([k for k in edge if k[0] == "CLAIM900002"]) == 1
    # without a claim id: one row per content (the exact repeat once)
    unkeyed = [
        str(r["claim_amount"])
        for r in silver(projects["on"], "claims").to_pylist()
        if r["datasource"] == "hospital_a" and r["claim_id"] is None and r["malformed_line"] is None
    ]
    assert sorted(unkeyed) == ["12.00", "13.00"]
    # then two files at once into the existing table (a MERGE): newer versions of the edge
    # claims, one older than what silver holds, which must not replace it
    later = [
        ("CLAIM900001", "2025-01-05", "102.00", "2025-03-01"),
        ("CLAIM900002", "2025-01-05", "14.00", "2025-03-01"),
        ("CLAIM000002", "2025-01-03", "1.00", "2025-03-01"),
    ]
    latest = [("CLAIM900001", "2025-01-05", "103.00", "2025-03-02")]
    for name in ways:
        for month, rows_ in (("06", later), ("07", latest)):
            path = tmp_path / name / f"landing/claims/hospital1_claims_2025_{month}.csv"
            path.write_text(claims_file(header, rows_))
    left_out.clear()
    again = run_both()
    assert ("claims", True) in left_out
    assert again["on"] == again["off"]
    assert again["on"][1][0] == len(later) + len(latest)  # rows read: every staged row
    now = {
        r["claim_id"]: str(r["claim_amount"])
        for r in silver(projects["on"], "claims").to_pylist()
        if r["datasource"] == "hospital_a" and r["claim_id"] in ("CLAIM000002", "CLAIM900001")
    }
    assert now == {"CLAIM000002": "266.02", "CLAIM900001": "103.00"}


def test_a_first_build_checks_repeated_keys_apart_and_writes_the_same_rows(
    tmp_path: Path,
    synth_template: Path,
    monkeypatch: pytest.MonkeyPatch,
    split_apart: list[tuple[str, bool]],
) -> None:
    """A build that creates an upsert table from rows of which a few repeat a key models and
    picks from those rows apart, and streams the rest into the table (``_apart``). Built so
    and the ordinary way (every row materialised, then the repeats searched), from the same
    sources plus edge rows — an exact repeat, two contents at one time, a newer and an
    older version, rows without an id (one repeated exactly) — silver transactions hold the
    same rows, and the run counts the same."""
    from rcmlake.layers import silver as layer

    spy = layer._newest_rows  # the fixture's, recording whether it split
    ways = {"apart": spy, "together": lambda s, c, m: layer.Newest(False, None)}
    cols = None
    built = {}
    for name, newest in ways.items():
        work = tmp_path / name
        shutil.copytree(synth_template, work)
        con = sqlite3.connect(work / "sources" / "hospital_a.db")
        cur = con.execute("SELECT * FROM transactions ORDER BY TransactionID LIMIT 5")
        cols = [d[0] for d in cur.description]
        first = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
        edge = [
            first[0],  # an exact repeat
            {**first[1], "Amount": 1.11},  # another content at the same time: a conflict
            {**first[2], "Amount": 2.22, "ModifiedDate": "2025-12-01"},  # newer: it wins
            {**first[3], "Amount": 3.33, "ModifiedDate": "2024-01-01"},  # older: it loses
            {**first[4], "TransactionID": None, "Amount": 4.44},
            {**first[4], "TransactionID": None, "Amount": 4.44},  # the same, without an id
            {**first[4], "TransactionID": None, "Amount": 5.55},
        ]
        marks = ", ".join("?" for _ in cols)
        con.executemany(
            f"INSERT INTO transactions VALUES ({marks})", [[r[c] for c in cols] for r in edge]
        )
        con.commit()
        con.close()
        monkeypatch.setattr(layer, "LEAVE_OUT_SHARE", 1.0)  # however many the repeats
        monkeypatch.setattr(layer, "_newest_rows", newest)
        project = make_project(work)
        result = project.run(["bronze", "silver"])
        assert result.exit_code == 0
        (rec,) = [r for r in result.records if r.layer == "silver" and r.table == "transactions"]
        con = duckdb.connect()
        con.register("t", project.lake.dataset(silver_path("transactions")))
        held = con.execute(
            "SELECT * EXCLUDE (_batch_id, _updated_at) FROM t ORDER BY ALL"
        ).fetchall()
        rows = {
            (r[0], r[1]): (r[2], r[3])
            for r in con.execute(
                "SELECT source_transaction_id, CAST(amount AS VARCHAR), dq_failures, is_quarantined "
                "FROM t WHERE datasource = 'hospital_a' AND (source_transaction_id IS NULL "
                "OR source_transaction_id IN (SELECT unnest(?)))",
                [[r["TransactionID"] for r in first]],
            ).fetchall()
        }
        built[name] = (held, (rec.rows_read, rec.rows_written, rec.rows_quarantined), rows)
    assert ("transactions", True) in split_apart
    assert built["apart"] == built["together"]
    held, (read, written, _), rows = built["apart"]
    staged = sum(
        sqlite3.connect(synth_template / "sources" / f"{ds}.db")
        .execute("SELECT count(*) FROM transactions")
        .fetchone()[0]
        for ds in ("hospital_a", "hospital_b")
    )
    assert read == staged + 7 and written == len(held)
    ids = [r[0] for r in rows]
    assert ids.count(first[0]["TransactionID"]) == 1  # the exact repeat, once
    assert rows[(first[2]["TransactionID"], "2.22")][1] is not None  # the newer version
    assert ids.count(first[2]["TransactionID"]) == ids.count(first[3]["TransactionID"]) == 1
    assert (first[3]["TransactionID"], "3.33") not in rows
    (conflict,) = [v for k, v in rows.items() if k[0] == first[1]["TransactionID"]]
    assert conflict == (["unique_key"], True)
    assert sorted(k[1] for k in rows if k[0] is None) == ["4.44", "5.55"]
