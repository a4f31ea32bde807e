"""How DuckDB reads lake tables: its own Parquet reader over the log's files, typed as the
table's schema, or delta-rs' dataset where the files alone do not say what the table holds."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa

from rcmlake.engines.duckdb import DuckDBEngine
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
