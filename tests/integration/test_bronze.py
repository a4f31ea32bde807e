"""Bronze ingestion against real databases: SQLite, MariaDB and PostgreSQL on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.compute as pc
import pytest
import sqlalchemy as sa
import yaml

from rcmlake.config.models import TableConfig
from rcmlake.demo import demo_config
from rcmlake.errors import ConfigError, SourceAuthError, SourceNotFound, SourceUnavailable
from rcmlake.layers.bronze import bronze_path
from rcmlake.project import Project
from rcmlake.sources.sql import SqlSource
from rcmlake.storage.audit import AUDIT_PATH
from tests.conftest import SMALL, Backend, make_project

EMR = ("departments", "providers", "patients", "encounters", "transactions")


def bronze_count(project: Project, ds: str, table: str) -> int:
    data = project.lake.read(bronze_path(ds, table))
    return data.num_rows if data is not None else 0


def versions(project: Project) -> dict[str, int]:
    out = {}
    for ds in SMALL.datasources:
        for t in (*EMR, "claims"):
            dt = project.lake.table(bronze_path(ds, t))
            out[f"{ds}.{t}"] = dt.version() if dt else -1
    return out


def source_rows(backend: Backend, project: Project, ds: str, table: str) -> int:
    src = SqlSource(ds, project.config.sources[ds], project.config.base_dir)
    engine = sa.create_engine(src.sqlalchemy_url())
    with engine.connect() as con:
        n = con.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
    engine.dispose()
    return int(n)


def test_full_and_incremental_loads_across_an_update(backend: Backend) -> None:
    manifest = backend.synth()
    project = make_project(backend.workdir, backend.urls())
    first = project.ingest()
    assert first.exit_code == 0, first.summary()
    for ds in SMALL.datasources:
        for table in EMR:
            assert (
                bronze_count(project, ds, table)
                == manifest["rows"][ds][table]
                == source_rows(backend, project, ds, table)
            )
    claims_rows = sum(n for f, n in manifest["claims_files"].items() if f.startswith("hospital1"))
    assert bronze_count(project, "hospital_a", "claims") == claims_rows
    lineage = project.lake.read(bronze_path("hospital_a", "patients"))
    assert {"_batch_id", "_ingested_at", "_source"} <= set(lineage.column_names)
    assert lineage["_source"].unique().to_pylist() == ["hospital_a.patients"]
    assert str(lineage.schema.field("_ingested_at").type) == "timestamp[us, tz=UTC]"
    # the engine writes the lineage itself: the load's batch and start, to the microsecond
    load = next(r for r in first.records if (r.datasource, r.table) == ("hospital_a", "patients"))
    assert lineage["_batch_id"].unique().to_pylist() == [load.batch_id]
    assert lineage["_ingested_at"].unique().to_pylist() == [load.started_at]

    # nothing new: no rows, no new Delta versions
    before = versions(project)
    again = project.ingest()
    assert again.exit_code == 0
    assert {r.status for r in again.records if r.load_type in ("full", "incremental")} == {
        "no_change"
    }
    assert {r.status for r in again.records if r.table == "npi_registry"} == {
        "skipped"
    }  # NPI mode off
    assert versions(project) == before

    # a month later: incremental tables append exactly the changed rows; bronze keeps history
    changed = backend.synth(update=True)
    third = project.ingest()
    assert third.exit_code == 0
    by_table = {(r.datasource, r.table): r for r in third.records if r.load_type != "file"}
    for ds in SMALL.datasources:
        assert by_table[(ds, "departments")].status == "no_change"
        for table in ("patients", "encounters", "transactions"):
            rec = by_table[(ds, table)]
            assert rec.status == "success" and rec.rows_written > 0
            assert rec.watermark_to > rec.watermark_from
            assert (
                bronze_count(project, ds, table)
                == before_rows(manifest, ds, table) + rec.rows_written
            )
        # every current source row is in bronze, and bronze holds each row version once
        current = project.lake.read(bronze_path(ds, "transactions"))
        assert current.num_rows == len(
            set(
                zip(
                    current["TransactionID"].to_pylist(),
                    current["ModifiedDate"].to_pylist(),
                    current["Amount"].to_pylist(),
                    strict=True,
                )
            )
        )
        src = SqlSource(ds, project.config.sources[ds], project.config.base_dir)
        engine = sa.create_engine(src.sqlalchemy_url())
        with engine.connect() as con:
            query = f"SELECT {src.quote('TransactionID')} FROM transactions"
            ids = {r[0] for r in con.execute(sa.text(query))}
        engine.dispose()
        assert set(current["TransactionID"].drop_null().to_pylist()) == ids - {None}
    assert changed["updates"] == 1


def before_rows(manifest: dict, ds: str, table: str) -> int:
    return manifest["rows"][ds][table]


def test_boundary_rows_sharing_the_last_watermark_are_not_missed_nor_doubled(workdir: Path) -> None:
    """A row modified on the day of the last watermark, after that load, still arrives once."""
    project = make_project(workdir)
    project.ingest({"hospital_a"})
    path = bronze_path("hospital_a", "patients")
    before = project.lake.read(path).num_rows
    import sqlite3

    con = sqlite3.connect(workdir / "sources" / "hospital_a.db")
    top = con.execute("SELECT max(ModifiedDate) FROM patients").fetchone()[0]
    con.execute(
        "INSERT INTO patients SELECT 'HOSP1-LATE01', FirstName, LastName, MiddleName, SSN, PhoneNumber,"
        " Gender, DOB, Address, ? FROM patients WHERE PatientID IS NOT NULL LIMIT 1",
        (top,),
    )
    con.commit()
    con.close()
    rec = next(r for r in project.ingest({"hospital_a"}).records if r.table == "patients")
    assert (rec.status, rec.rows_written) == ("success", 1)
    data = project.lake.read(path)
    assert data.num_rows == before + 1
    assert data.filter(pc.equal(data["PatientID"], "HOSP1-LATE01")).num_rows == 1
    rec = next(r for r in project.ingest({"hospital_a"}).records if r.table == "patients")
    assert (rec.status, rec.rows_written) == ("no_change", 0)


def test_unreachable_database_fails_its_tables_only(workdir: Path) -> None:
    urls = {"hospital_b": ("postgres", "postgresql://postgres@127.0.0.1:9/nowhere")}
    project = make_project(workdir, urls)
    result = project.ingest()
    assert result.exit_code == 1
    failed = {(r.datasource, r.table) for r in result.failed}
    assert failed == {("hospital_b", t) for t in EMR}
    assert all("cannot connect" in r.error for r in result.failed)
    assert bronze_count(project, "hospital_a", "patients") > 0
    assert bronze_count(project, "hospital_b", "claims") > 0  # files of B still load
    audit = project.audit.read()
    assert pc.sum(pc.equal(audit["status"], "failed")).as_py() == len(EMR)


def test_crash_between_commit_and_audit_neither_loses_nor_duplicates(workdir: Path) -> None:
    make_project(workdir)
    env = {**os.environ, "RCMLAKE_FAULTS": "bronze.after_commit:3"}
    crashed = subprocess.run(
        [
            sys.executable,
            "-m",
            "rcmlake",
            "run",
            "--layer",
            "bronze",
            "--config",
            str(workdir / "rcmlake.yaml"),
        ],
        env=env,
        capture_output=True,
        cwd=workdir,
        check=False,
    )
    assert crashed.returncode == -9, crashed.stderr
    project = Project.load(workdir / "rcmlake.yaml")
    committed = {
        c["rcmlake"]["batch_id"]
        for ds in SMALL.datasources
        for t in (*EMR, "claims")
        for c in project.lake.commits(bronze_path(ds, t))
        if "batch_id" in c["rcmlake"]
    }
    audited = project.audit.batch_ids()
    assert committed - audited, (
        "the fault point should leave a committed batch without an audit row"
    )
    result = project.ingest()
    assert result.exit_code == 0
    recovered = project.audit.read().filter(pc.equal(project.audit.read()["status"], "recovered"))
    assert recovered.num_rows >= 1
    assert committed <= project.audit.batch_ids()

    clean_dir = workdir.parent / "clean"
    clean_dir.mkdir()
    from tests.conftest import synthesize

    synthesize(clean_dir, SMALL)
    clean = make_project(clean_dir)
    clean.ingest()
    for ds in SMALL.datasources:
        for t in (*EMR, "claims"):
            got = project.lake.read(bronze_path(ds, t)).drop_columns(["_batch_id", "_ingested_at"])
            want = clean.lake.read(bronze_path(ds, t)).drop_columns(["_batch_id", "_ingested_at"])
            keys = [
                (c, "ascending")
                for c in want.column_names
                if not c.startswith("_") and c != "_cast_errors"
            ][:3]
            assert got.num_rows == want.num_rows, f"{ds}.{t}"
            assert (
                got.sort_by(keys)
                .select(want.column_names[:5])
                .equals(want.sort_by(keys).select(want.column_names[:5]))
            )


def test_audit_log_records_every_load(workdir: Path) -> None:
    project = make_project(workdir)
    result = project.ingest()
    audit = project.audit.read()
    assert audit.num_rows == len(result.records)
    row = audit.filter(
        pc.and_(pc.equal(audit["datasource"], "hospital_a"), pc.equal(audit["table"], "patients"))
    ).to_pylist()[0]
    assert row["load_type"] == "incremental" and row["watermark_column"] == "ModifiedDate"
    assert row["watermark_from"] is None and row["watermark_to"] is not None
    assert row["rows_read"] == row["rows_written"] > 0
    assert row["started_at"] <= row["ended_at"] and row["status"] == "success"
    status = project.status(5)
    assert len(status) == 5 and {"when", "table", "rows", "status"} <= set(status[0])
    assert project.lake.exists(AUDIT_PATH)


def test_schema_drift_flows_or_stops_only_its_table(backend: Backend) -> None:
    """A column added at the source flows into bronze; an unmapped one dropped is reported;
    a mapped one dropped stops that table, by name, and the rest of the run goes on."""
    backend.synth()
    project = make_project(backend.workdir, backend.urls())
    assert project.run(["bronze", "silver"]).exit_code == 0
    src = SqlSource("hospital_a", project.config.sources["hospital_a"], project.config.base_dir)
    q = src.quote
    engine = sa.create_engine(src.sqlalchemy_url())
    with engine.begin() as con:
        top = con.execute(sa.text(f"SELECT max({q('ModifiedDate')}) FROM patients")).scalar_one()
        pid = con.execute(
            sa.text(f"SELECT min({q('PatientID')}) FROM patients WHERE {q('ModifiedDate')} = :top"),
            {"top": top},
        ).scalar_one()
        con.execute(
            sa.text(f"ALTER TABLE patients ADD COLUMN {q('PreferredLanguage')} VARCHAR(20)")
        )
        con.execute(
            sa.text(
                f"UPDATE patients SET {q('PreferredLanguage')} = 'es' WHERE {q('PatientID')} = :p"
            ),
            {"p": pid},
        )
        con.execute(sa.text(f"ALTER TABLE encounters DROP COLUMN {q('InsertedDate')}"))
        con.execute(sa.text(f"ALTER TABLE transactions DROP COLUMN {q('VisitType')}"))
    engine.dispose()
    held = bronze_count(project, "hospital_a", "patients")
    tx_version = project.lake.table(bronze_path("hospital_a", "transactions")).version()
    result = project.run(["bronze", "silver"])
    assert result.exit_code == 1
    by = {
        r.table: r for r in result.records if r.datasource == "hospital_a" and r.layer == "bronze"
    }
    assert by["patients"].status == "success" and by["patients"].rows_written == 1
    assert "new column(s) PreferredLanguage added to bronze" in by["patients"].error
    patients = project.lake.read(bronze_path("hospital_a", "patients"))
    assert patients.num_rows == held + 1
    assert [r["PatientID"] for r in patients.to_pylist() if r["PreferredLanguage"] == "es"] == [pid]
    assert by["encounters"].status in ("success", "no_change")
    assert "InsertedDate no longer delivered" in by["encounters"].error
    assert by["transactions"].status == "failed"
    assert "mapped column(s) VisitType no longer in the source" in by["transactions"].error
    assert project.lake.table(bronze_path("hospital_a", "transactions")).version() == tx_version
    # the other hospital and silver went on
    assert all(
        r.status in ("success", "no_change")
        for r in result.records
        if r.datasource == "hospital_b" or r.layer == "silver"
    )
    again = project.run(["bronze"])
    by = {r.table: r for r in again.records if r.datasource == "hospital_a"}
    assert by["patients"].status == "no_change"
    assert bronze_count(project, "hospital_a", "patients") == held + 1


@pytest.mark.services
@pytest.mark.parametrize(
    ("kind", "url", "error", "message"),
    [
        (
            "mysql",
            "mysql://nobody:{pw}@127.0.0.1:3306/test",
            SourceAuthError,
            "authentication failed",
        ),
        ("mysql", "mysql://root@127.0.0.1:3306/no_such_db_x", SourceNotFound, "does not exist"),
        (
            "postgres",
            "postgresql://nobody:{pw}@127.0.0.1:5432/postgres",
            SourceAuthError,
            "authentication failed",
        ),
        (
            "postgres",
            "postgresql://postgres@127.0.0.1:5432/no_such_db_x",
            SourceNotFound,
            "does not exist",
        ),
        (
            "postgres",
            "postgresql://postgres@no-such-host.invalid:5432/x",
            SourceNotFound,
            "unknown host",
        ),
        ("postgres", "postgresql://postgres@127.0.0.1:9/x", SourceUnavailable, "cannot connect"),
    ],
)
def test_connection_errors_say_why_and_only_unreachable_is_retried(
    workdir: Path, kind: str, url: str, error: type, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import service_or_skip

    service_or_skip(kind)
    monkeypatch.setenv("HB_PW", "Sup3r@Sec:ret/x")  # '@', ':' and '/' in a password
    project = make_project(workdir, {"hospital_b": (kind, url.format(pw="${HB_PW}"))})
    src = SqlSource("hospital_b", project.config.sources["hospital_b"], project.config.base_dir)
    with pytest.raises(error, match=message) as raised:
        src.check()
    assert raised.value.transient is (error is SourceUnavailable)
    result = project.ingest({"hospital_b"})
    failed = [r for r in result.failed if r.datasource == "hospital_b"]
    assert failed and all(message in r.error and "Sup3r" not in r.error for r in failed)
    assert "Sup3r" not in str(project.audit.read().to_pylist())


def test_names_with_quotes_load_and_injection_reads_nothing(backend: Backend) -> None:
    """On every dialect: a legal table name holding the dialect's quote character loads; a
    name carrying SQL is only ever a (missing) name."""
    import yaml

    backend.synth()
    project = make_project(backend.workdir, backend.urls())
    src = SqlSource("hospital_a", project.config.sources["hospital_a"], project.config.base_dir)
    odd = {"mysql": 'odd`name"x'}.get(backend.kind, 'odd"name')
    engine = sa.create_engine(src.sqlalchemy_url())
    with engine.begin() as con:
        con.execute(sa.text(f"CREATE TABLE {src.quote(odd)} AS SELECT * FROM departments"))
        n = con.execute(sa.text("SELECT count(*) FROM departments")).scalar_one()
    engine.dispose()
    raw = yaml.safe_load((backend.workdir / "rcmlake.yaml").read_text())
    raw["sources"]["hospital_a"]["tables"] += [
        {"name": odd, "entity": "departments", "target": "departments_odd"},
        {
            "name": f"departments{src.quote('x')[0]} WHERE 1=0 UNION SELECT * FROM patients --",
            "entity": "departments",
            "target": "departments_evil",
        },
    ]
    (backend.workdir / "rcmlake.yaml").write_text(yaml.safe_dump(raw))
    project = Project.load(backend.workdir / "rcmlake.yaml")
    by = {
        r.table: r for r in project.ingest({"hospital_a"}).records if r.datasource == "hospital_a"
    }
    assert by["departments_odd"].status == "success"
    assert bronze_count(project, "hospital_a", "departments_odd") == n
    assert by["departments_evil"].status == "failed"
    assert project.lake.table(bronze_path("hospital_a", "departments_evil")) is None


def _lineage_free(project: Project, ds: str, table: str) -> list[str]:
    data = project.lake.read(bronze_path(ds, table))
    assert data is not None
    names = sorted(n for n in data.column_names if not n.startswith("_"))
    return sorted(repr(tuple(r[n] for n in names)) for r in data.select(names).to_pylist())


def test_a_table_read_in_parts_lands_every_row_once(backend: Backend) -> None:
    """``partitions: 3`` reads a table as three queries at once, split by a hash of its
    primary key: bronze holds the very rows a single read lands (NULL keys included), in a
    full and in an incremental load; SQLite, a file, is refused."""
    backend.synth()
    raw = yaml.safe_load(demo_config(backend.urls()))
    for source in raw["sources"].values():
        for t in source["tables"]:
            if t["name"] in ("patients", "transactions"):
                t["partitions"] = 3
    if backend.kind == "sqlite":
        with pytest.raises(ConfigError, match="SQLite is read in one stream"):
            make_project(backend.workdir, sources=raw["sources"])
        return
    whole = make_project(backend.workdir, backend.urls(), lake=str(backend.workdir / "whole"))
    split = make_project(
        backend.workdir, sources=raw["sources"], lake=str(backend.workdir / "split")
    )
    for update in (False, True):
        if update:
            backend.synth(update=True)
        assert whole.ingest().exit_code == 0
        result = split.ingest()
        assert result.exit_code == 0
        for ds in SMALL.datasources:
            for table in ("patients", "transactions"):
                assert _lineage_free(split, ds, table) == _lineage_free(whole, ds, table)
    # the parts are real: disjoint, none empty, together the table
    src = SqlSource("hospital_a", split.config.sources["hospital_a"], split.config.base_dir)
    table = next(t for t in src.config.tables if t.name == "transactions")
    engine = sa.create_engine(src.sqlalchemy_url())
    with engine.connect() as con:
        parts = [
            con.execute(
                sa.text(f"SELECT count(*) FROM ({src.query(table, None, p)}) AS q")
            ).scalar_one()
            for p in range(3)
        ]
        total = con.execute(sa.text("SELECT count(*) FROM transactions")).scalar_one()
    engine.dispose()
    assert min(parts) > 0 and sum(parts) == total


def test_partitions_need_a_primary_key() -> None:
    with pytest.raises(ValueError, match="give `primary_key`"):
        TableConfig(name="transactions", partitions=2)
