"""Gold on the synthetic hospitals: star-schema integrity, masking, metadata, ways in."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import duckdb
import pytest
import sqlalchemy as sa

from rcmlake.layers.gold import gold_path
from rcmlake.project import Project
from rcmlake.synth import synthesize
from tests.conftest import SERVERS, make_project, service_or_skip

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory, synth_template: Path) -> Project:
    work = tmp_path_factory.mktemp("gold")
    shutil.copytree(synth_template, work, dirs_exist_ok=True)
    project = make_project(work)
    assert project.run().exit_code == 0
    return project


def test_facts_join_the_dimension_version_current_on_service_date(
    tmp_path: Path, synth_template: Path
) -> None:
    shutil.copytree(synth_template, tmp_path, dirs_exist_ok=True)
    project = make_project(tmp_path)
    project.run()
    synthesize(tmp_path, update=True)
    project.run()
    rows = project.sql("""
        SELECT f.service_date, p.valid_from, p.valid_to, p.patient_key, f.patient_sk
        FROM fact_transaction f JOIN dim_patient p USING (patient_sk)
        WHERE p.patient_key IN (SELECT patient_key FROM dim_patient GROUP BY 1 HAVING count(*) > 1)
    """).to_pylist()
    assert rows, "some patients moved and have encounters"
    assert all(r["valid_from"] <= r["service_date"] < r["valid_to"] for r in rows)
    versions = {r["patient_sk"] for r in rows}
    keys = {r["patient_key"] for r in rows}
    assert keys and len(versions) > len(keys)  # facts of one patient reach both versions
    # no fact row points at a dimension row that does not exist; unknown members are -1
    for fact, dims in {
        "fact_transaction": [
            "patient",
            "provider",
            "department",
            "payer",
            "procedure",
            "diagnosis",
        ],
        "fact_claim": ["patient", "provider", "department", "payer"],
    }.items():
        for d in dims:
            orphans = (
                project.sql(
                    f"SELECT count(*) FROM {fact} f LEFT JOIN dim_{d} x USING ({d}_sk) WHERE x.{d}_sk IS NULL"
                )
                .column(0)[0]
                .as_py()
            )
            assert orphans == 0, (fact, d)


def test_quarantined_rows_never_reach_gold(lake: Project) -> None:
    bad = (
        lake.sql("SELECT count(*) FROM silver.transactions WHERE is_quarantined")
        .column(0)[0]
        .as_py()
    )
    good = (
        lake.sql("SELECT count(*) FROM silver.transactions WHERE NOT is_quarantined")
        .column(0)[0]
        .as_py()
    )
    assert bad > 0
    assert lake.sql("SELECT count(*) FROM fact_transaction").column(0)[0].as_py() == good
    leaked = lake.sql(
        "SELECT count(*) FROM fact_transaction f JOIN silver.transactions t USING (transaction_key) WHERE t.is_quarantined"
    )
    assert leaked.column(0)[0].as_py() == 0


def test_gold_carries_no_direct_identifiers(lake: Project) -> None:
    forbidden = {
        "first_name",
        "last_name",
        "middle_name",
        "ssn",
        "phone",
        "address",
        "date_of_birth",
    }
    for name in lake.tables():
        if name.startswith("gold.") and not name.endswith("dim_provider"):
            cols = set(lake.sql(f"SELECT * FROM {name} LIMIT 0").column_names)
            assert not cols & forbidden, name


def test_partitions_and_column_descriptions_live_in_delta(lake: Project) -> None:
    dt = lake.lake.table(gold_path("fact_claim"))
    assert dt.metadata().partition_columns == ["service_month"]
    assert "One row per claim" in dt.metadata().description
    comments = {f.name: f.metadata.get("comment") for f in dt.schema().fields}
    assert "deductible + coinsurance + copay" in comments["patient_responsibility"]


def test_gold_is_not_rebuilt_when_silver_did_not_change(lake: Project) -> None:
    before = lake.lake.table(gold_path("mart_kpi_monthly")).version()
    result = lake.run(["gold"])
    assert {r.status for r in result.records} == {"no_change"}
    assert lake.lake.table(gold_path("mart_kpi_monthly")).version() == before


def test_sql_sees_silver_and_gold_by_name(lake: Project) -> None:
    a = lake.sql("SELECT count(*) FROM fact_claim").column(0)[0].as_py()
    b = lake.sql("SELECT count(*) FROM gold.fact_claim").column(0)[0].as_py()
    assert a == b > 0
    assert lake.sql("SELECT count(*) FROM patients").column(0)[0].as_py() > 0
    assert lake.sql("SELECT count(*) FROM audit_loads").column(0)[0].as_py() > 0


def test_export_duckdb_views_and_copy(lake: Project, tmp_path: Path) -> None:
    for copy in (False, True):
        out = tmp_path / f"lake{copy}.duckdb"
        names = lake.export_duckdb(out, copy=copy)
        assert "gold.fact_claim" in names and "silver.patients" in names
        con = duckdb.connect(str(out), read_only=True)
        n = con.execute("SELECT count(*), min(service_month) FROM fact_claim").fetchone()
        con.close()
        assert n[0] == lake.sql("SELECT count(*) FROM fact_claim").column(0)[0].as_py()
        assert n[1] is not None


def test_export_postgres_publishes_gold(lake: Project) -> None:
    service_or_skip("postgres")
    schema = f"gold_{uuid.uuid4().hex[:8]}"
    counts = lake.export_postgres("postgresql://postgres@127.0.0.1:5432/postgres", schema=schema)
    engine = sa.create_engine(SERVERS["postgres"])
    try:
        with engine.connect() as con:
            n = con.execute(sa.text(f'SELECT count(*) FROM "{schema}".fact_claim')).scalar_one()
            rate = con.execute(
                sa.text(f'SELECT sum(gross_charges) FROM "{schema}".mart_kpi_monthly')
            ).scalar_one()
            keys = con.execute(sa.text(f'SELECT patient_key FROM "{schema}".dim_patient')).scalars()
            published = set(keys)
        # as analyst (the default), MRNs leave hashed, the same as `rcmlake sql` shows them
        raw = set(
            lake.sql("SELECT patient_key FROM dim_patient", role="privileged").column(0).to_pylist()
        )
        assert not published & (raw - {"unknown"})
        assert published == set(
            lake.sql("SELECT patient_key FROM dim_patient").column(0).to_pylist()
        )
        assert (
            n
            == counts["fact_claim"]
            == lake.sql("SELECT count(*) FROM fact_claim").column(0)[0].as_py()
        )
        assert float(rate) == pytest.approx(
            float(lake.sql("SELECT sum(gross_charges) FROM mart_kpi_monthly").column(0)[0].as_py())
        )
        # publishing again replaces, never doubles
        lake.export_postgres("postgresql://postgres@127.0.0.1:5432/postgres", schema=schema)
        with engine.connect() as con:
            assert (
                con.execute(sa.text(f'SELECT count(*) FROM "{schema}".fact_claim')).scalar_one()
                == n
            )
    finally:
        with engine.begin() as con:
            con.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


@pytest.mark.browser
def test_dashboard_renders_in_headless_chromium(lake: Project, tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        message = "chromium is not installed (scripts/test-deps.sh installs Debian's package)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    html = lake.report(tmp_path / "report.html")
    text = html.read_text()
    assert "https://" not in text.split("<script>", 1)[0]  # nothing fetched from the network
    dom = subprocess.run(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=8000",
            "--dump-dom",
            html.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    body = dom[dom.index("<body") : dom.index(">", dom.index("<body"))]
    assert 'data-errors=""' in body, body
    assert 'data-rendered="7"' in body, body
    assert dom.count('class="main-svg"') >= 6
    assert "Gross collection rate" in dom and "hospital_a" in dom


def test_dimension_keys_survive_an_update_and_a_rebuild(
    tmp_path: Path, synth_template: Path
) -> None:
    shutil.copytree(synth_template, tmp_path, dirs_exist_ok=True)
    project = make_project(tmp_path)
    project.run()
    query = "SELECT patient_key, valid_from, patient_sk FROM dim_patient"
    before = {
        (r["patient_key"], r["valid_from"]): r["patient_sk"] for r in project.sql(query).to_pylist()
    }
    synthesize(tmp_path, update=True)
    project.run()
    after = {
        (r["patient_key"], r["valid_from"]): r["patient_sk"] for r in project.sql(query).to_pylist()
    }
    assert len(after) > len(before)
    # every version that existed keeps its key; a closed version keeps its start, so its key
    assert {k: after[k] for k in before} == before
    assert len(set(after.values())) == len(after)  # no two versions share a key
    # a rebuild from the same silver (forced by a new gold config) gives the same keys
    forced = make_project(tmp_path, gold={"fiscal_year_start_month": 7})
    forced.run(["gold"])
    again = {
        (r["patient_key"], r["valid_from"]): r["patient_sk"] for r in forced.sql(query).to_pylist()
    }
    assert again == after
    # and facts point at the same keys: patient_sk of a claim is version_key(patient_key, effective_from)
    check = forced.sql(
        """
        WITH s AS (
            SELECT *, CASE WHEN row_number() OVER (PARTITION BY patient_key ORDER BY effective_from) = 1
                           THEN TIMESTAMP '1900-01-01' ELSE effective_from END AS version_start
            FROM silver.patients WHERE NOT is_quarantined
        )
        SELECT count(*) FILTER (WHERE d.patient_sk <> version_key(s.patient_key, s.version_start)) AS moved,
               count(*) AS n
        FROM dim_patient d JOIN s
          ON s.patient_key = d.patient_key AND s.is_current = d.is_current
         AND coalesce(CAST(s.effective_to AS DATE), DATE '9999-12-31') = d.valid_to
        WHERE d.patient_sk <> -1""",
        role="privileged",
    ).to_pylist()[0]
    assert check["n"] > 0 and check["moved"] == 0


def test_readers_see_the_last_complete_release(lake: Project, tmp_path: Path) -> None:
    from rcmlake.storage import release

    pinned = release.latest(lake.lake)
    assert pinned is not None and set(pinned.versions) == {
        m.split(".")[1] for m in lake.tables() if m.startswith("gold.")
    }
    n = lake.sql("SELECT count(*) FROM fact_claim").column(0)[0].as_py()
    # a half-done build: one gold table rewritten (here: emptied) but no release published
    dt = lake.lake.table(gold_path("fact_claim"))
    lake.lake.write(gold_path("fact_claim"), dt.to_pyarrow_table().slice(0, 0), mode="overwrite")
    try:
        assert lake.sql("SELECT count(*) FROM fact_claim").column(0)[0].as_py() == n
        out = tmp_path / "pinned.duckdb"
        lake.export_duckdb(out)
        con = duckdb.connect(str(out), read_only=True)
        assert con.execute("SELECT count(*) FROM fact_claim").fetchone()[0] == n
        con.close()
        # and the next run sees the table moved since the release, so it rebuilds and releases
        result = lake.run(["gold"])
        assert {r.status for r in result.records} == {"success"}
        newer = release.latest(lake.lake)
        assert newer is not None and newer.release_id != pinned.release_id
        assert lake.sql("SELECT count(*) FROM fact_claim").column(0)[0].as_py() == n
    finally:
        lake.run(["gold"])


def test_a_new_package_version_rebuilds_gold(
    lake: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rcmlake.layers.gold as gold_layer

    assert {r.status for r in lake.run(["gold"]).records} == {"no_change"}
    monkeypatch.setattr(gold_layer, "__version__", "9.9.9")
    assert {r.status for r in lake.run(["gold"]).records} == {"success"}
    original = gold_layer.models
    last = original("gold")[-1]
    fixed = type(last)(last.name, last.layer, last.sql + "\n-- a fix", last.spec)

    def patched(layer: str):  # type: ignore[no-untyped-def]
        return tuple(fixed if m is last else m for m in original(layer))

    monkeypatch.setattr(gold_layer, "models", patched)
    assert {r.status for r in lake.run(["gold"]).records} == {"success"}


def test_a_complete_build_killed_before_its_release_is_released_without_rebuilding(
    tmp_path: Path, synth_template: Path
) -> None:
    from rcmlake.storage import release

    shutil.copytree(synth_template, tmp_path, dirs_exist_ok=True)
    project = make_project(tmp_path)
    assert project.run().exit_code == 0
    built = release.latest(project.lake)
    assert built is not None
    # the build committed every table, but its release row never landed
    project.lake.write(release.RELEASE_PATH, release.SCHEMA.empty_table(), mode="overwrite")
    result = project.run(["gold"])
    assert {r.status for r in result.records} == {"recovered"}
    again = release.latest(project.lake)
    assert again is not None and again.versions == built.versions
    assert again.as_of_date == built.as_of_date and again.fingerprint == built.fingerprint
    assert {r.status for r in project.run(["gold"]).records} == {"no_change"}
