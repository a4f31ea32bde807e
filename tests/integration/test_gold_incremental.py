"""Gold built incrementally holds exactly what a whole rebuild from the same silver holds.

Each step changes the sources the way hospitals do (a few payments posted, a late parent
row, a month of new data, a rollback, a vacuum), runs, and then rebuilds gold whole in a
copy of the lake: every gold table must hold the same rows. The steps also pin down what
the incremental build skipped, so a plan that rebuilt everything would fail here too.
"""

from __future__ import annotations

import shutil
import sqlite3
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from rcmlake.layers.gold import gold_path
from rcmlake.layers.silver import STAMP
from rcmlake.project import Project, RunResult
from rcmlake.synth import SynthSpec, synth_manifest, synthesize, touch
from rcmlake.transforms import models
from rcmlake.transforms.lineage import columns_read, gold_lineage
from tests.conftest import make_project

# remittances on: the 835 facts and marts take part (the shared small set has none)
SPEC = SynthSpec(seed=5, transactions=1_500, months=4, defect_rate=0.01, remittance_defects=False)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gold-incremental")
    synthesize(out, SPEC)
    return out


def gold_rows(project: Project) -> dict[str, list[str]]:
    out = {}
    for m in models("gold"):
        table = project.lake.read(gold_path(m.name))
        assert table is not None, m.name
        names = sorted(table.column_names)
        out[m.name] = sorted(repr(tuple(r[n] for n in names)) for r in table.to_pylist())
    return out


def assert_gold_as_if_rebuilt(project: Project, tmp: Path) -> None:
    """Gold equals what a whole build makes from the same silver (a copy of the lake without
    gold and its releases)."""
    whole = tmp / f"whole-{len(list(tmp.glob('whole-*')))}"
    shutil.copytree(project.lake.root, whole)
    shutil.rmtree(whole / "gold")
    shutil.rmtree(whole / "_releases")
    twin = Project(project.config.model_copy(update={"lake": str(whole)}))
    result = twin.run(["gold"])
    assert {r.status for r in result.records} == {"success"}
    assert {r.load_type for r in result.records} == {"rebuild"}
    got, want = gold_rows(project), gold_rows(twin)
    assert [n for n in want if got[n] != want[n]] == []


def scalar(project: Project, query: str) -> Any:
    return project.sql(query, role="privileged").column(0)[0].as_py()


def statuses(result: RunResult) -> dict[str, tuple[str, str]]:
    return {r.table: (r.status, r.load_type) for r in result.records if r.layer == "gold"}


def months_written(project: Project, table: str) -> list[str] | None:
    newest = project.lake.commits(gold_path(table), limit=1)[0]["rcmlake"]
    return newest.get("months")


def files_by_month(project: Project, fact: str) -> dict[date | None, set[str]]:
    """The fact's data files per service-month partition, as its Delta log lists them."""
    dt = project.lake.table(f"gold/{fact}")
    assert dt is not None
    files: dict[date | None, set[str]] = {}
    for f in pa.table(dt.get_add_actions(flatten=False)).to_pylist():
        files.setdefault(f["partition"]["service_month"], set()).add(f["path"])
    return files


def test_payments_posted_rebuild_only_what_reads_them(template: Path, tmp_path: Path) -> None:
    shutil.copytree(template, tmp_path / "work")
    work = tmp_path / "work"
    project = make_project(work)
    assert project.run().exit_code == 0
    assert_gold_as_if_rebuilt(project, tmp_path)

    # 1% of transactions paid a cent more, all in the last month of services
    as_of = date.fromisoformat(synth_manifest(work)["as_of"])
    files_before = files_by_month(project, "fact_transaction")
    assert sum(touch(work, 0.01, recent_months=1).values()) > 0
    result = project.run()
    assert result.exit_code == 0
    got = statuses(result)
    # the month's files were swapped for new ones in the commit; every other month's kept
    files_after = files_by_month(project, "fact_transaction")
    month = as_of.replace(day=1)
    assert files_after.keys() == files_before.keys()
    assert not files_after[month] & files_before[month]
    assert all(files_after[m] == files_before[m] for m in files_before if m != month)
    # fact_claim reads no column the edit changed (paid amounts are the transactions' own):
    # it, the remittance facts built on it, the dimensions and the A/R marts are kept
    kept = [n for n, (status, _) in got.items() if status == "no_change"]
    assert {
        "fact_claim",
        "fact_remittance",
        "fact_adjustment",
        "dim_patient",
        "mart_ar_aging",
    } <= set(kept)
    assert got["fact_transaction"] == ("success", "months")
    assert months_written(project, "fact_transaction") == [as_of.replace(day=1).isoformat()]
    assert got["mart_revenue_monthly"] == ("success", "rebuild")
    assert_gold_as_if_rebuilt(project, tmp_path)

    # the same edit spread over every month: every month of transactions changes, so the
    # table is overwritten whole (no partition filter to apply); fact_claim is still kept
    touch(work, 0.01)
    result = project.run()
    got = statuses(result)
    assert got["fact_transaction"] == ("success", "rebuild")
    assert got["fact_claim"] == ("no_change", "rebuild")
    why = {r.table: r.error for r in result.records}
    assert why["fact_transaction"] == "every service month changed: silver.transactions"
    # a fact read from one rewritten whole is rebuilt whole, without comparing 10M rows
    assert got["fact_encounter"] == ("success", "rebuild")
    assert why["fact_encounter"] == "gold.fact_transaction was rewritten"
    assert_gold_as_if_rebuilt(project, tmp_path)

    # a run with nothing new writes no gold table
    assert {s for s, _ in statuses(project.run()).values()} == {"no_change"}


def test_a_late_department_releases_its_rows_into_every_fact(
    template: Path, tmp_path: Path
) -> None:
    """A department missing from the EMR quarantines its encounters and transactions; when
    it arrives they are released, and the facts of their months are rebuilt with them."""
    shutil.copytree(template, tmp_path / "work")
    work = tmp_path / "work"
    db = work / "sources" / "hospital_a.db"
    con = sqlite3.connect(db)
    dept = con.execute(
        "SELECT DepartmentID, count(*) FROM encounters GROUP BY 1 ORDER BY 2 DESC LIMIT 1"
    ).fetchone()[0]
    held = con.execute("SELECT * FROM departments WHERE DeptID = ?", (dept,)).fetchall()
    con.execute("DELETE FROM departments WHERE DeptID = ?", (dept,))
    con.commit()
    project = make_project(work)
    project.run()
    # the department's key is its id and datasource (silver/transactions.sql), known before it arrives
    lines = (
        "SELECT count(*) FROM silver.transactions t {} "
        f"WHERE t.department_key = '{str(dept).strip()}-hospital_a'"
    )
    in_fact = lines.format("JOIN fact_transaction f USING (transaction_key)")
    assert scalar(project, in_fact) == 0

    marks = ", ".join("?" for _ in held[0])
    con.executemany(f"INSERT INTO departments VALUES ({marks})", held)
    con.commit()
    con.close()
    result = project.run()
    assert result.exit_code == 0
    assert sum(r.rows_released for r in result.records if r.layer == "silver") > 0
    got = statuses(result)
    assert got["dim_department"] == ("success", "rebuild")
    assert got["fact_transaction"][0] == "success"  # its months: every one the lines fall in
    # every released transaction line of the department is in the fact now
    assert (
        scalar(project, in_fact)
        == scalar(project, lines.format("") + " AND NOT is_quarantined")
        > 0
    )
    assert_gold_as_if_rebuilt(project, tmp_path)


def test_a_month_of_updates_a_rollback_and_a_vacuum(template: Path, tmp_path: Path) -> None:
    shutil.copytree(template, tmp_path / "work")
    work = tmp_path / "work"
    project = make_project(work)
    assert project.run().exit_code == 0

    # the next month arrives: new services, patients who moved, claims paid and denied
    synthesize(work, update=True)
    second = project.run()
    assert second.exit_code == 0
    assert_gold_as_if_rebuilt(project, tmp_path)

    # rolled back: gold no longer is what its newest release says, so the run after the
    # rollback rebuilds it whole, and equals a build that never saw the update
    project.rollback(second.run_id)
    third = project.run()
    assert third.exit_code == 0
    assert_gold_as_if_rebuilt(project, tmp_path)

    # silver moves, then vacuum removes the silver files the last release was built from:
    # the plan cannot compare against them, so what read them is rebuilt whole, not stale
    touch(work, 0.02)
    assert project.run(["bronze", "silver"]).exit_code == 0
    project.vacuum(retain_hours=0)
    fourth = project.run(["gold"])
    assert fourth.exit_code == 0
    got = statuses(fourth)
    assert got["fact_transaction"] == ("success", "rebuild")
    why = next(r.error for r in fourth.records if r.table == "fact_transaction")
    assert why and why.startswith("whole:")
    assert_gold_as_if_rebuilt(project, tmp_path)


def test_keys_written_since_the_release_are_found_by_the_commits_stamps(
    template: Path, tmp_path: Path, compared: list[list[str]]
) -> None:
    """Silver's key-preserving writes record the ``_updated_at`` they stamp; gold finds the
    keys written since its release by those values, not by comparing two versions of the
    table. A write that may remove keys or bring older rows back (a table's rollback, which
    copies the restored version's metadata) makes gold compare the versions again."""
    shutil.copytree(template, tmp_path / "work")
    work = tmp_path / "work"
    project = make_project(work)
    assert project.run().exit_code == 0
    compared.clear()
    edited = sum(touch(work, 0.01).values())
    assert edited > 0
    result = project.run()
    assert result.exit_code == 0
    newest = project.lake.commits("silver/transactions", limit=1)[0]
    stamp = newest["rcmlake"][STAMP]
    stamped = scalar(
        project,
        "SELECT count(*) FROM silver.transactions "
        f"WHERE _updated_at = CAST('{stamp}' AS TIMESTAMPTZ)",
    )
    written = next(r for r in result.records if r.layer == "silver" and r.table == "transactions")
    assert stamped == written.rows_written >= edited  # the stamp names exactly its rows
    key_compare = ["base_silver_transactions", "transaction_key", "_updated_at"]
    assert key_compare not in compared  # found by the stamp
    assert statuses(result)["fact_transaction"] == ("success", "rebuild")
    assert_gold_as_if_rebuilt(project, tmp_path)

    # silver transactions alone rolled back a version: the restore commit carries the stamp
    # of the version it restores, which names none of the rows it brought back
    version = project.lake.content_version("silver/transactions")
    project.rollback(table="silver/transactions", version=version - 1)
    restored = project.lake.commits("silver/transactions", limit=1)[0]["rcmlake"]
    assert STAMP in restored and "rolled_back_from" in restored
    compared.clear()
    assert project.run(["gold"]).exit_code == 0
    assert key_compare in compared  # compared, as the stamps cannot vouch for the restore
    assert_gold_as_if_rebuilt(project, tmp_path)

    # a silver overwrite (a full entity: rows of a datasource may go) records no stamp
    assert all(STAMP not in c["rcmlake"] for c in project.lake.commits("silver/departments"))


def test_incremental_false_rebuilds_every_table(template: Path, tmp_path: Path) -> None:
    shutil.copytree(template, tmp_path / "work")
    work = tmp_path / "work"
    assert make_project(work).run().exit_code == 0
    touch(work, 0.01)
    result = make_project(work, gold={"incremental": False}).run()
    assert set(statuses(result).values()) == {("success", "rebuild")}


def test_lineage_traces_each_column_to_the_table_it_is_read_from() -> None:
    lineage = gold_lineage()
    # through CTEs, joins and CASE: exactly what fact_claim takes from transactions
    assert lineage["fact_claim"]["silver.transactions"] == {
        "transaction_key",
        "paid_date",
        "procedure_code",
        "icd_code",
        "is_quarantined",
    }
    assert lineage["fact_transaction"]["gold.dim_patient"] == {
        "patient_key",
        "patient_sk",
        "valid_from",
        "valid_to",
    }
    assert "params" in lineage["dim_patient"] and "params" not in lineage["fact_claim"]
    # every input a partitioned fact reads has a month mapping, or it would always rebuild whole
    for m in models("gold"):
        mapped: dict[str, Any] = m.spec.get("months", {})
        if mapped:
            assert set(lineage[m.name]) == set(mapped), m.name
    # a column traced through the schemas goes to its own table; one no schema knows (a
    # model newer than the dry run) counts for each table of its scope
    read = columns_read(
        "SELECT amount, mystery FROM silver.transactions, silver.claims WHERE claim_status = 'Paid'"
    )
    assert read["silver.transactions"] == {"amount", "mystery"}
    assert read["silver.claims"] == {"claim_status", "mystery"}
    # a star reads every column
    star = columns_read("WITH t AS (SELECT * FROM silver.departments) SELECT * FROM t")
    assert {"department_key", "name", "is_quarantined"} <= star["silver.departments"]
