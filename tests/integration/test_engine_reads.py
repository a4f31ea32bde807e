"""How DuckDB reads lake tables: its own Parquet reader over the log's files, typed as the
table's schema, or delta-rs' dataset where the files alone do not say what the table holds."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from rcmlake.engines.duckdb import DuckDBEngine
from rcmlake.errors import StorageError
from rcmlake.storage.delta import Lake
from rcmlake.storage.lake_types import UTC_TS


def _rows(ids: list[str], status: str) -> pa.Table:
    return pa.table(
        {
            "claim_key": pa.array(ids),
            "claim_status": pa.array([status] * len(ids)),
            "amount": pa.array([Decimal("10.50")] * len(ids), pa.decimal128(18, 2)),
            "at": pa.array([datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)] * len(ids), UTC_TS),
        }
    )


def test_a_merged_table_with_a_column_added_later_reads_typed_and_filtered(
    tmp_path: Path,
) -> None:
    lake = Lake(str(tmp_path / "lake"))
    lake.write("silver/claims", _rows(["c1", "c2", "c3"], "Submitted"), mode="append")
    # MERGE writes its files as string_view: a pyarrow-dataset scan could not filter them
    lake.merge("silver/claims", _rows(["c2"], "Paid"), on=["claim_key"])
    # a column added by a later write: the files before it do not have it
    later = _rows(["c4"], "Denied").append_column("payer", pa.array(["Medicare"]))
    lake.write("silver/claims", later, mode="append", schema_mode="merge")
    scan = lake.scan("silver/claims")
    assert scan is not None and scan[1] is not None and len(scan[1]) >= 2
    with DuckDBEngine().session() as s:
        assert s.read_lake("silver.claims", lake, "silver/claims")
        assert s.columns("silver.claims") == {
            "claim_key": "VARCHAR",
            "claim_status": "VARCHAR",
            "amount": "DECIMAL(18,2)",
            "at": "TIMESTAMP WITH TIME ZONE",
            "payer": "VARCHAR",
        }
        paid = s.sql("SELECT claim_key, amount FROM silver.claims WHERE claim_status = 'Paid'")
        assert paid.to_pylist() == [{"claim_key": "c2", "amount": Decimal("10.50")}]
        got = s.sql("SELECT claim_key, payer FROM silver.claims ORDER BY claim_key").to_pylist()
        assert got == [
            {"claim_key": "c1", "payer": None},
            {"claim_key": "c2", "payer": None},
            {"claim_key": "c3", "payer": None},
            {"claim_key": "c4", "payer": "Medicare"},
        ]
        # an earlier version reads its own files
        assert s.read_lake("first", lake, "silver/claims", version=0)
        first = s.sql("SELECT count(*) AS n, max(claim_status) AS s FROM first").to_pylist()
        assert first == [{"n": 3, "s": "Submitted"}]


def _view_sql(s: object, name: str) -> str:
    got = s.sql(f"SELECT sql FROM duckdb_views() WHERE view_name = '{name}'")  # type: ignore[attr-defined]
    return str(got.column(0)[0].as_py())


def test_a_partitioned_table_reads_its_hive_folders_typed_and_pruned(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    months = pa.array([date(2025, 1, 1), date(2025, 2, 1), date(2025, 2, 1)], pa.date32())
    data = _rows(["c1", "c2", "c3"], "Paid").append_column("month", months)
    lake.write("gold/fact", data, mode="append", partition_by=["month"])
    lake.merge("gold/fact", data.slice(1, 1), on=["claim_key"])  # string_view files too
    scan = lake.scan("gold/fact")
    assert scan is not None and scan[1] is not None and scan[2] is not None
    assert sorted(v["month"] for v in scan[2]) == [date(2025, 1, 1), date(2025, 2, 1)]
    with DuckDBEngine().session() as s:
        assert s.read_lake("gold.fact", lake, "gold/fact")
        assert "hive_partitioning" in _view_sql(s, "fact")
        assert s.columns("gold.fact")["month"] == "DATE"
        got = s.sql(
            "SELECT month, claim_key FROM gold.fact WHERE month = DATE '2025-02-01' ORDER BY 2"
        )
        assert got.to_pylist() == [
            {"month": date(2025, 2, 1), "claim_key": "c2"},
            {"month": date(2025, 2, 1), "claim_key": "c3"},
        ]


def test_a_partition_folder_duckdb_would_misread_reads_through_delta_rs(tmp_path: Path) -> None:
    # a NULL partition (delta-rs' __HIVE_DEFAULT_PARTITION__ folder) and a value that
    # needs escaping in a folder name: the values come from the log, through the dataset
    lake = Lake(str(tmp_path / "lake"))
    data = _rows(["c1", "c2", "c3"], "Paid").append_column(
        "month", pa.array(["2025-01", None, "2025 02/x"])
    )
    lake.write("gold/fact", data, mode="append", partition_by=["month"])
    with DuckDBEngine().session() as s:
        assert s.read_lake("gold.fact", lake, "gold/fact")
        assert "hive_partitioning" not in _view_sql(s, "fact")
        got = s.sql("SELECT claim_key, month FROM gold.fact ORDER BY claim_key")
        assert got.to_pylist() == [
            {"claim_key": "c1", "month": "2025-01"},
            {"claim_key": "c2", "month": None},
            {"claim_key": "c3", "month": "2025 02/x"},
        ]


SOURCE = """
SELECT 'k' || i AS claim_key,
       CASE WHEN i % 4 = 0 THEN NULL ELSE DATE '2025-01-01' + INTERVAL (i % 3) MONTH END::DATE
           AS service_month,
       i AS n,
       (i / 8)::DECIMAL(18, 2) AS amount,
       TIMESTAMP '2025-01-02 03:04:05' + INTERVAL (i) SECOND AS stamped_at,
       ['a', 'b'][1:1 + i % 2] AS flags
FROM range(1, 1001) r(i)
"""


def test_duckdb_writes_its_own_parquet_and_commits_it_with_true_statistics(
    tmp_path: Path,
) -> None:
    """A DuckDB write into a local lake is DuckDB's Parquet writer plus one commit of the
    files with Delta statistics; what it holds equals the query, partitioned or not."""
    lake = Lake(str(tmp_path / "lake"))
    with DuckDBEngine().session() as s:
        want = s.sql(
            "SELECT claim_key, service_month, n, amount, CAST(stamped_at AS TIMESTAMPTZ) AS stamped_at, flags "
            f"FROM ({SOURCE}) ORDER BY n"
        )
        v = s.write(
            lake,
            "gold/fact",
            SOURCE,
            mode="overwrite",
            partition_by=["service_month"],
            description="a fact",
            comments={"claim_key": "the claim"},
            metadata={"run_id": "r1"},
        )
        assert v == 0
        dt = lake.table("gold/fact")
        assert dt is not None
        assert dt.metadata().description == "a fact"
        assert dt.metadata().partition_columns == ["service_month"]
        field = json.loads(dt.schema().to_json())["fields"][0]
        assert field["name"] == "claim_key" and field["metadata"] == {"comment": "the claim"}
        assert "_delta_log" in {p.name for p in (tmp_path / "lake/gold/fact").iterdir()}
        # every file's statistics are true of its rows: row and null counts, no bounds
        adds = pa.table(dt.get_add_actions(flatten=True)).to_pylist()
        assert {a["partition.service_month"] for a in adds} == {
            None,
            date(2025, 1, 1),
            date(2025, 2, 1),
            date(2025, 3, 1),
        }
        for a in adds:
            month = a["partition.service_month"]
            rows = [r for r in want.to_pylist() if r["service_month"] == month]
            assert a["num_records"] == len(rows)
            assert a["null_count.amount"] == 0 and a["null_count.flags"] == 0
            assert {v for k, v in a.items() if k.startswith(("min.", "max."))} == {None}
        assert sum(a["num_records"] for a in adds) == 1000
        # delta-rs' dataset reads a bound missing from the statistics as NULL and prunes
        # every file by it: a filter on a column with no bounds still finds its rows
        dataset = lake.dataset("gold/fact")
        assert dataset is not None
        over = pc.field("amount") > pa.scalar(Decimal("100"), pa.decimal128(18, 2))
        assert dataset.to_table(filter=over).num_rows == sum(
            r["amount"] > 100 for r in want.to_pylist()
        )
        # read back through delta-rs and through DuckDB's own reader: the query's rows
        back = lake.read("gold/fact").sort_by("n")
        assert back.select(want.column_names).to_pylist() == want.to_pylist()
        assert s.read_lake("fact", lake, "gold/fact")
        pruned = s.sql("SELECT count(*) AS c FROM fact WHERE n <= 10").to_pylist()
        assert pruned == [{"c": 10}]
        # a second write of the same columns is an overwrite commit of new files
        assert s.write(lake, "gold/fact", f"{SOURCE} LIMIT 10", mode="overwrite") == 1
        assert lake.read("gold/fact").num_rows == 10
        assert lake.commits("gold/fact")[-1]["rcmlake"]["run_id"] == "r1"
        # a write that adds a column goes through delta-rs' schema evolution
        wider = f"SELECT *, 'x' AS extra FROM ({SOURCE}) LIMIT 5"
        assert s.write(lake, "gold/fact", wider, mode="append", schema_mode="merge") == 2
        final = lake.read("gold/fact")
        assert final.num_rows == 15 and final.column("extra").null_count == 10


def test_duckdb_replaces_whole_partitions_with_its_own_files_null_month_included(
    tmp_path: Path,
) -> None:
    """A write with ``replace`` swaps the files of those partitions (the NULL one too) for the
    new ones in one commit; every other partition keeps its files and rows."""
    lake = Lake(str(tmp_path / "lake"))
    months = "service_month IS NULL OR service_month = DATE '2025-02-01'"
    with DuckDBEngine().session() as s:
        s.write(lake, "gold/fact", SOURCE, mode="overwrite", partition_by=["service_month"])
        before = pa.table(lake.table("gold/fact").get_add_actions(flatten=True)).to_pylist()  # type: ignore[union-attr]
        kept = {a["path"] for a in before if a["partition.service_month"] == date(2025, 1, 1)}
        new = f"SELECT * REPLACE (n + 10000 AS n) FROM ({SOURCE}) WHERE {months}"
        s.write(
            lake,
            "gold/fact",
            new,
            mode="overwrite",
            partition_by=["service_month"],
            predicate=months,
            replace=[{"service_month": None}, {"service_month": date(2025, 2, 1)}],
        )
        got = s.sql(f"SELECT n, service_month FROM ({SOURCE})").to_pylist()
        want = sorted(
            r["n"] + 10000 if r["service_month"] in (None, date(2025, 2, 1)) else r["n"]
            for r in got
        )
        assert sorted(lake.read("gold/fact").column("n").to_pylist()) == want
        after = pa.table(lake.table("gold/fact").get_add_actions(flatten=True)).to_pylist()  # type: ignore[union-attr]
        assert {
            a["path"] for a in after if a["partition.service_month"] == date(2025, 1, 1)
        } == kept
        assert not {a["path"] for a in after} & {
            a["path"] for a in before if a["partition.service_month"] in (None, date(2025, 2, 1))
        }
        # a table not partitioned by the replaced column: replacing would keep rows twice
        s.write(lake, "silver/flat", SOURCE, mode="overwrite")
        with pytest.raises(StorageError, match="partitioned by"):
            s.write(
                lake,
                "silver/flat",
                new,
                mode="overwrite",
                predicate=months,
                replace=[{"service_month": None}],
            )
        assert lake.read("silver/flat").num_rows == 1000


def test_duckdb_merge_rewrites_only_touched_files_and_equals_delta_rs_merge(
    tmp_path: Path,
) -> None:
    """DuckDB's MERGE (a rewrite of the files holding a replaced row, committed with their
    removal) gives the table delta-rs' MERGE gives from the same rows: updates that pass
    ``update_when``, matches that do not (kept as they are), new keys and a NULL key
    (inserted); files with no replaced row keep their paths. A commit on a version that is
    no longer the newest is a conflict, not a second copy of the rewritten rows."""
    from rcmlake.errors import CommitConflict

    lake = Lake(str(tmp_path / "lake"))
    table = (
        "SELECT 'k' || lpad(CAST(i AS VARCHAR), 5, '0') AS k, CAST(i % 7 AS BIGINT) AS v, "
        "CAST(TIMESTAMP '2025-01-01' + INTERVAL (i) MINUTE AS TIMESTAMP) AS ts "
        "FROM range(3000) AS r(i)"
    )
    # a newer edit of k00010 and k02990, an older one of k00020 (not applied), a new key, a
    # NULL key, and k01500 unchanged in content (not applied either)
    source = (
        "SELECT * FROM (VALUES ('k00010', 100, TIMESTAMP '2026-01-01'), "
        "('k02990', 200, TIMESTAMP '2026-01-01'), ('k00020', 300, TIMESTAMP '2020-01-01'), "
        "('k01500', 1500 % 7, TIMESTAMP '2026-01-01'), ('new01', 400, TIMESTAMP '2026-01-01'), "
        "(NULL, 500, TIMESTAMP '2026-01-01')) AS s(k, v, ts)"
    )
    typed = f"SELECT CAST(k AS VARCHAR) AS k, CAST(v AS BIGINT) AS v, CAST(ts AS TIMESTAMP) AS ts FROM ({source})"
    when = "s.v <> t.v AND s.ts >= t.ts"
    with DuckDBEngine().session() as s:
        for path in ("silver/by_duckdb", "silver/by_delta_rs"):
            # three files: ordered, so each holds a third of the keys
            for part in range(3):
                s.write(
                    lake,
                    path,
                    f"SELECT * FROM ({table}) WHERE CAST(substr(k, 2) AS INT) // 1000 = {part}",
                )
        before = {f.path for f in lake.logged_files(lake.table("silver/by_duckdb"))}  # type: ignore[arg-type]
        stale = lake.table("silver/by_duckdb", version=2)
        s.merge(
            lake, "silver/by_duckdb", typed, on=["k"], update_when=when, metadata={"run_id": "r1"}
        )
        lake.merge("silver/by_delta_rs", s.sql(typed), on=["k"], update_when=when)
        ours = sorted(
            lake.read("silver/by_duckdb").to_pylist(), key=lambda r: (r["k"] or "", r["v"])
        )
        theirs = sorted(
            lake.read("silver/by_delta_rs").to_pylist(), key=lambda r: (r["k"] or "", r["v"])
        )
        assert ours == theirs and len(ours) == 3002
        got = {r["k"]: r["v"] for r in ours}
        assert (got["k00010"], got["k02990"], got["new01"]) == (100, 200, 400)
        assert (got["k00020"], got["k01500"], got[None]) == (20 % 7, 1500 % 7, 500)
        after = {f.path for f in lake.logged_files(lake.table("silver/by_duckdb"))}  # type: ignore[arg-type]
        # the middle file (k01000-k01999) had a match but no replaced row: not rewritten
        assert len(before - after) == 2 and len(before & after) == 1
        assert lake.commits("silver/by_duckdb", limit=1)[0]["rcmlake"]["run_id"] == "r1"
        # DuckDB wrote the files (an append with removals), not delta-rs' MERGE
        operations = [
            lake.table(p).history(1)[0]["operation"]
            for p in ("silver/by_duckdb", "silver/by_delta_rs")
        ]  # type: ignore[union-attr]
        assert operations == ["WRITE", "MERGE"]
        # nothing to replace or insert (an older edit, an unchanged row): no commit, no file
        version = lake.table("silver/by_duckdb").version()  # type: ignore[union-attr]
        unchanged = f"SELECT * FROM ({typed}) WHERE k IN ('k00020', 'k01500')"
        s.merge(lake, "silver/by_duckdb", unchanged, on=["k"], update_when=when)
        assert lake.table("silver/by_duckdb").version() == version  # type: ignore[union-attr]
        # a merge computed on an older version: its removals are already gone
        assert stale is not None
        with pytest.raises(CommitConflict):
            lake.commit_files(
                "silver/by_duckdb",
                [],
                schema=lake.read("silver/by_duckdb").schema,
                remove=lake.logged_files(stale),
                base=stale,
            )
        assert lake.read("silver/by_duckdb").num_rows == 3002
        # a table emptied (no files left, as a delete of every row leaves it): all inserted
        s.write(lake, "silver/emptied", typed, mode="overwrite")
        lake.table("silver/emptied").delete()  # type: ignore[union-attr]
        assert lake.table("silver/emptied").get_add_actions().num_rows == 0  # type: ignore[union-attr]
        s.merge(lake, "silver/emptied", typed, on=["k"], update_when=when)
        assert lake.read("silver/emptied").num_rows == 6
        # with no row to match, the rows are appended as a first merge writes them
        assert lake.table("silver/emptied").history(1)[0]["operation"] == "WRITE"  # type: ignore[union-attr]


def _months_per_file(lake: Lake, path: str) -> dict[str, set[date | None]]:
    """Each logged file of ``path`` -> the months of ``service_date`` it holds (read by
    DuckDB straight from the file, not through the log)."""
    import duckdb

    table = lake.table(path)
    assert table is not None
    con = duckdb.connect()
    return {
        f.path: {
            r[0]
            for r in con.execute(
                "SELECT DISTINCT CAST(date_trunc('month', service_date) AS DATE) "
                f"FROM read_parquet('{f.local}', hive_partitioning = false)"
            ).fetchall()
        }
        for f in lake.logged_files(table)
    }


def test_a_clustered_merge_keeps_one_month_per_file_and_rewrites_only_the_edited_months(
    tmp_path: Path,
) -> None:
    """``cluster_by``: the table's rows interleave three months, yet each file DuckDB writes
    holds one month. A merge of March edits (updates, a match left as it is, a new March key,
    a key with no date) and of a row moved from January to March rewrites January's and
    March's files and writes the NULL month's: February's file keeps its path. The month is
    in no column and no partition, and the rows equal delta-rs' MERGE of the same source into
    an unclustered table."""
    lake = Lake(str(tmp_path / "lake"))
    table = (
        "SELECT 'k' || lpad(CAST(i AS VARCHAR), 5, '0') AS k, CAST(i AS BIGINT) AS v, "
        "CAST(DATE '2025-01-01' + INTERVAL (i % 90) DAY AS DATE) AS service_date "
        "FROM range(3000) AS r(i)"
    )
    # k00060 is 2025-03-02, k02969 2025-03-31, k00061 2025-03-03 (same v: left as it is);
    # k00000 (2025-01-01) moves to March
    source = (
        "SELECT CAST(k AS VARCHAR) AS k, CAST(v AS BIGINT) AS v, CAST(d AS DATE) AS service_date "
        "FROM (VALUES ('k00060', -1, DATE '2025-03-02'), ('k02969', -2, DATE '2025-03-31'), "
        "('k00061', 61, DATE '2025-03-03'), ('new01', -3, DATE '2025-03-31'), "
        "('new02', -4, NULL), ('k00000', -5, DATE '2025-03-15')) AS s(k, v, d)"
    )
    when = "s.v <> t.v"
    with DuckDBEngine().session() as s:
        s.merge(lake, "silver/clustered", table, on=["k"], cluster_by="service_date")
        s.write(lake, "silver/plain", table)
        first = _months_per_file(lake, "silver/clustered")
        assert all(len(months) == 1 for months in first.values())
        assert set().union(*first.values()) == {
            date(2025, 1, 1),
            date(2025, 2, 1),
            date(2025, 3, 1),
        }
        # unclustered, the same rows share a file across months
        assert any(len(m) > 1 for m in _months_per_file(lake, "silver/plain").values())

        s.merge(
            lake, "silver/clustered", source, on=["k"], update_when=when, cluster_by="service_date"
        )
        lake.merge("silver/plain", s.sql(source), on=["k"], update_when=when)
        after = _months_per_file(lake, "silver/clustered")
        assert all(len(months) == 1 for months in after.values())
        february = {p for p, m in first.items() if m == {date(2025, 2, 1)}}
        assert february and february <= set(after)  # untouched
        assert not (set(first) - february) & set(after)  # January's and March's rewritten
        assert {None} in after.values()

        ours = lake.read("silver/clustered")
        assert ours.column_names == ["k", "v", "service_date"]
        assert lake.table("silver/clustered").metadata().partition_columns == []  # type: ignore[union-attr]
        key = lambda r: r["k"]  # noqa: E731
        theirs = sorted(lake.read("silver/plain").to_pylist(), key=key)
        assert sorted(ours.to_pylist(), key=key) == theirs and len(theirs) == 3002
        got = {r["k"]: r["v"] for r in theirs}
        assert (got["k00060"], got["k02969"], got["k00061"], got["new02"]) == (-1, -2, 61, -4)
        moved = [r for r in ours.to_pylist() if r["k"] == "k00000"]
        assert moved == [{"k": "k00000", "v": -5, "service_date": date(2025, 3, 15)}]
        # DuckDB reads it back by the log: no month column appears from the folder names
        s.read_lake("back", lake, "silver/clustered")
        assert list(s.columns("back")) == ["k", "v", "service_date"]
        assert s.scalar("SELECT sum(v) FROM back") == sum(got.values())
        # two versions read without the files both hold: February's rows are left out of
        # both, and the rows that differ are those the whole versions differ in
        s.read_lake("was", lake, "silver/clustered", version=0, without=1)
        s.read_lake("now", lake, "silver/clustered", version=1, without=0)
        s.read_lake("was_all", lake, "silver/clustered", version=0)
        february_rows = s.scalar("SELECT count(*) FROM was_all WHERE month(service_date) = 2")
        assert s.scalar("SELECT count(*) FROM was") == 3000 - february_rows
        assert not s.scalar("SELECT count(*) FROM now WHERE month(service_date) = 2")
        diff = "SELECT * FROM ({0} EXCEPT ALL {1}) UNION ALL SELECT * FROM ({1} EXCEPT ALL {0})"
        whole = sorted(
            s.sql(diff.format("SELECT * FROM was_all", "SELECT * FROM back")).to_pylist(), key=str
        )
        assert whole == sorted(
            s.sql(diff.format("SELECT * FROM was", "SELECT * FROM now")).to_pylist(), key=str
        )
        assert len(whole) == 2 * 3 + 2  # three rows replaced (old and new), two new keys
        # vacuum finds the files the merge replaced in the month folders and removes them
        replaced = [tmp_path / "lake" / "silver" / "clustered" / p for p in set(first) - set(after)]
        assert replaced and all(p.exists() for p in replaced)
        assert lake.maintain("silver/clustered", retain_hours=0)["files_vacuumed"] >= len(replaced)
        assert not any(p.exists() for p in replaced)
        assert sorted(lake.read("silver/clustered").to_pylist(), key=key) == theirs


def test_vacuum_compacts_a_clustered_table_month_by_month(workdir: Path) -> None:
    """``rcmlake vacuum`` on silver transactions (``cluster_by: service_date``): files that
    hold several months (delta-rs' compaction packs small files of any month together) and a
    month's several small files are rewritten, one month per file, in one commit that only
    rewrites files. The rows stay the same, the next run finds nothing new anywhere, and a
    last-month edit after it rewrites only that month's files."""
    from rcmlake.storage.delta import is_maintenance
    from rcmlake.synth import touch
    from tests.conftest import make_project

    project = make_project(workdir)
    assert project.run().exit_code == 0
    path = "silver/transactions"
    lake = project.lake
    before = sorted(lake.read(path).to_pylist(), key=str)  # type: ignore[union-attr]
    lake.maintain(path, retain_hours=168)  # delta-rs' compaction: months mixed
    assert any(len(m) > 1 for m in _months_per_file(lake, path).values())
    version = lake.table(path).version()  # type: ignore[union-attr]

    (done,) = [r for r in project.vacuum() if r["table"] == path]
    assert done["files_compacted"] >= 1 and done["files_added"] >= 1
    layout = _months_per_file(lake, path)
    assert all(len(m) == 1 for m in layout.values())
    months = [next(iter(m)) for m in layout.values()]
    assert sorted(months, key=str) == sorted(set(months), key=str)  # one file a month
    assert all(p.startswith("rcmlake_month=") for p in layout)
    assert sorted(lake.read(path).to_pylist(), key=str) == before
    since = lake.commits_since(path, version)
    assert since and all(is_maintenance(c) for c in since)
    log = Path(lake.root) / path / "_delta_log"
    actions = [
        json.loads(line)
        for c in since
        for line in (log / f"{int(c['version']):020d}.json").read_text().splitlines()
    ]
    changes = [a[k]["dataChange"] for a in actions for k in ("add", "remove") if k in a]
    assert changes and not any(changes)  # the files hold the rows they replace

    again = project.run()
    assert again.exit_code == 0
    assert {r.status for r in again.records if r.layer != "bronze"} <= {"no_change", "skipped"}
    # a 1% edit of the last month's services rewrites that month's file, no other
    touch(workdir, 0.01, recent_months=1)
    assert project.run().exit_code == 0
    after = _months_per_file(lake, path)
    last = max(months, key=str)
    assert {p for p, m in layout.items() if m != {last}} <= set(after)
    assert not {p for p, m in layout.items() if m == {last}} & set(after)
