"""The Spark engine on a real Spark Connect server (Sail on loopback): the same lake as DuckDB's.

Bronze is extracted once and copied, so both engines transform the very same batches (same
batch ids and ingestion times, hence the same version starts and surrogate keys); then every
silver and gold table must hold the same rows on both, KPIs included, after an update and
after posted payments too (gold then built incrementally, by the same plan on both).
"""

from __future__ import annotations

import datetime as dt
import math
import shutil
import socket
import time
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from rcmlake.engines.base import quote_literal
from rcmlake.engines.dialect import to_spark
from rcmlake.engines.duckdb import DuckDBEngine
from rcmlake.engines.spark import SparkEngine
from rcmlake.errors import ConfigError
from rcmlake.layers.silver import STAMP
from rcmlake.project import Project
from rcmlake.storage.delta import VOUCHES_FOR
from rcmlake.synth import synthesize, touch
from rcmlake.transforms import models
from tests.conftest import SMALL, make_project

# stamped with the wall clock or the run: differ between any two runs, on any engine
VOLATILE = {"_updated_at"}


def _value(v: Any) -> Any:
    """A cell in a form both engines' types agree on (decimal precision and timestamp zone
    tags differ by engine; the values may not)."""
    if isinstance(v, Decimal):
        return v.normalize()
    if isinstance(v, float):
        return None if math.isnan(v) else round(v, 9)
    if isinstance(v, dt.datetime):
        return (
            v.replace(tzinfo=None)
            if v.tzinfo is None
            else v.astimezone(dt.UTC).replace(tzinfo=None)
        )
    if isinstance(v, list):
        return tuple(sorted(map(str, v)))
    return v


def rows(project: Project, path: str) -> list[tuple[Any, ...]]:
    table = project.lake.read(path)
    assert table is not None, f"{path} was not written"
    names = sorted(n for n in table.column_names if n not in VOLATILE)
    data = table.select(names).to_pylist()
    return sorted((tuple(_value(r[n]) for n in names) for r in data), key=repr)


def columns(project: Project, path: str) -> list[str]:
    table = project.lake.read(path)
    assert table is not None
    return sorted(table.column_names)


def _twin(workdir: Path, name: str, run: dict[str, object]) -> Project:
    folder = workdir / name
    folder.mkdir(exist_ok=True)
    return make_project(workdir, lake=str(folder / "lake"), run=run)


@pytest.fixture
def twins(tmp_path: Path, spark_remote: str) -> tuple[Project, Project, Path]:
    synthesize(tmp_path, SMALL)
    duck = _twin(tmp_path, "duck", {"engine": "duckdb"})
    spark = _twin(tmp_path, "spark", {"engine": "spark", "spark_remote": spark_remote})
    return duck, spark, tmp_path


def _same_bronze(duck: Project, spark: Project) -> None:
    """Bronze extracted once (by the DuckDB twin), copied to the Spark twin's lake."""
    assert duck.run(["bronze"]).exit_code in (0, 1)
    target = Path(spark.lake.root) / "bronze"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(Path(duck.lake.root) / "bronze", target)


def _transform(project: Project) -> dict[str, tuple[str, str]]:
    """Silver and gold; how each gold table was built (status, load type)."""
    result = project.run(["silver", "gold"])
    assert result.exit_code == 0, [(r.table, r.error) for r in result.failed]
    return {r.table: (r.status, r.load_type) for r in result.records if r.layer == "gold"}


def test_spark_builds_the_same_silver_and_gold_as_duckdb(
    twins: tuple[Project, Project, Path],
    compared: list[list[str]],
    left_out: list[tuple[str, bool]],
    split_apart: list[tuple[str, bool]],
    rechecked: list[str],
) -> None:
    duck, spark, workdir = twins
    key_compare = ["base_silver_transactions", "transaction_key", "_updated_at"]
    for step in ("build", "update", "payments"):
        if step == "update":
            synthesize(workdir, None, update=True)
        if step == "payments":  # 1% of last month's transactions paid a cent more
            touch(workdir, 0.01, recent_months=1)
        _same_bronze(duck, spark)
        rechecked.clear()
        built = _transform(duck)
        on_duckdb = list(rechecked)
        compared.clear()
        rechecked.clear()
        # the same incremental plan on both engines (tables kept, months rewritten by a
        # partition overwrite), not a silent fall-back to a whole rebuild on one of them
        assert _transform(spark) == built
        if step == "payments":
            # transactions edited in place, no key added: the quarantined claims are not
            # re-checked, on either engine (Sail's MERGE says it inserted none, and the
            # empty commit that stamps it writes no row)
            assert "claims" not in on_duckdb and "claims" not in rechecked
        if step == "build":  # claims' older versions left out first, on each engine
            assert left_out.count(("claims", True)) == 2
            # transactions (a key repeated in each hospital) checked apart from the rest
            assert split_apart.count(("transactions", True)) == 2
        if step == "payments":
            assert built["fact_transaction"] == ("success", "months")
            assert built["fact_claim"] == ("no_change", "rebuild")
            # Sail's MERGE commits without rcmlake's metadata; the empty commit after it
            # carries the stamp and names it, so gold finds the written keys by the stamp
            commits = spark.lake.commits("silver/transactions")
            merges = {c["version"]: c for c in commits}
            stamps = [c["rcmlake"] for c in commits if VOUCHES_FOR in c["rcmlake"]]
            assert stamps
            assert all(m[STAMP] and not merges[m[VOUCHES_FOR]]["rcmlake"] for m in stamps)
            assert key_compare not in compared
        for layer in ("silver", "gold"):
            for m in models(layer):
                path = f"{layer}/{m.name}"
                if not duck.lake.exists(path):
                    assert not spark.lake.exists(path), path
                    continue
                assert columns(duck, path) == columns(spark, path), path
                assert rows(duck, path) == rows(spark, path), f"{path} differs after {step}"
    # the KPIs are in gold's marts, compared above; and they are not empty
    kpis = spark.lake.read("gold/mart_kpi_monthly")
    assert kpis is not None and kpis.num_rows > 0


def test_remittances_build_the_same_on_both_engines(
    tmp_path: Path, spark_remote: str, streamed: list[tuple[str, bool]]
) -> None:
    """835 remittances through both engines: claim adjustments stream into their new table
    (``silver._streamed``), remittance claims join claims, and gold numbers each claim's
    remittances; every remittance table is the same on both."""
    synthesize(tmp_path, replace(SMALL, remittances=True))
    duck = _twin(tmp_path, "duck", {"engine": "duckdb"})
    spark = _twin(tmp_path, "spark", {"engine": "spark", "spark_remote": spark_remote})
    _same_bronze(duck, spark)
    _transform(duck)
    _transform(spark)
    assert streamed.count(("claim_adjustments", True)) == 2  # on each engine
    assert ("remittance_claims", True) not in streamed
    for path in (
        "silver/claim_adjustments",
        "silver/remittance_claims",
        "gold/fact_remittance",
        "gold/fact_adjustment",
        "gold/mart_remittance_monthly",
    ):
        assert rows(duck, path) == rows(spark, path), path
    facts = spark.lake.read("gold/fact_remittance")
    assert facts is not None and max(facts["remittance_sequence"].to_pylist()) > 1


def test_spark_commits_carry_rcmlake_metadata(twins: tuple[Project, Project, Path]) -> None:
    """State rcmlake reads from the Delta log (batch ids, rules, gold's fingerprint) is there
    whichever engine committed, so a second run changes nothing."""
    duck, spark, _ = twins
    _same_bronze(duck, spark)
    _transform(spark)
    for m in models("silver"):
        commits = spark.lake.commits(f"silver/{m.name}")
        if commits:
            assert commits[0]["rcmlake"].get("run_id"), m.name
    again = spark.run(["silver", "gold"])
    assert again.exit_code == 0
    assert {r.status for r in again.records if r.layer == "gold"} == {"no_change"}
    assert {r.status for r in again.records if r.layer == "silver"} <= {"no_change"}


def test_spark_needs_a_remote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RCMLAKE_SPARK_REMOTE", raising=False)
    monkeypatch.delenv("SPARK_REMOTE", raising=False)
    with pytest.raises(ConfigError, match="Spark Connect URL"):
        make_project(tmp_path, run={"engine": "spark"})


def test_functions_give_the_same_values_on_both_engines(spark_remote: str) -> None:
    """Surrogate keys, version keys, ISO weekdays, month names, parsed dates and zone
    conversion: what models compute must not depend on the engine."""
    query = f"""
        SELECT k, surrogate_key(k) AS sk, version_key(k, t) AS vk, isodow(d) AS dow,
               monthname(d) AS month, CAST(try_strptime(s, '%m/%d/%Y') AS DATE) AS parsed,
               local_to_utc(t, 'America/New_York') AS utc
        FROM (SELECT 'patient-' || CAST(i AS VARCHAR) AS k,
                     CAST('2024-03-09 23:30:00.123456' AS TIMESTAMP) + i * INTERVAL 1 DAY AS t,
                     CAST('2024-01-08' AS DATE) + CAST(i AS INTEGER) AS d,
                     CASE WHEN i % 2 = 0 THEN '0' || CAST(1 + i % 9 AS VARCHAR) || '/15/2024'
                          ELSE 'not a date' END AS s
              FROM (VALUES {", ".join(f"({i})" for i in range(14))}) AS r(i)) AS x
        ORDER BY k"""
    with DuckDBEngine().session() as s:
        duck = s.sql(query).to_pylist()
    with SparkEngine(spark_remote).session() as s:
        spark = s.sql(query).to_pylist()
    assert len(duck) == 14
    assert [{k: _value(v) for k, v in r.items()} for r in duck] == [
        {k: _value(v) for k, v in r.items()} for r in spark
    ]
    assert {r["dow"] for r in duck} == set(range(1, 8))
    assert sum(r["parsed"] is None for r in duck) == 7


def test_missing_spellings_are_null_on_both_engines(spark_remote: str) -> None:
    """Blank, 'NULL', 'null' and 'N/A' (any case, spaces around) are missing; other text,
    long or short, padded or not, is kept as it is (tabs are not spaces: ``trim`` keeps them)."""
    values = [
        "", " ", "   ", "null", "NULL", " Null ", "n/a", "N/A", "  n/a   ", "nul", "nulls",
        "n/a!", "a", " x ", "na", "9999", "TRACE123|2025-03-01|1234.56",
        "  padded value  ", "\tnull", "null\n", "N/A" + " " * 40, None,
    ]  # fmt: skip
    query = (
        f"SELECT i, {DuckDBEngine().missing_as_null('v')} AS kept FROM (VALUES "
        + ", ".join(
            f"({i}, {'NULL' if v is None else quote_literal(v)})" for i, v in enumerate(values)
        )
        + ") AS t(i, v) ORDER BY i"
    )
    expected = [
        None if v is None or v.strip(" ").lower() in ("", "null", "n/a") else v for v in values
    ]
    assert expected.count(None) == 11
    with DuckDBEngine().session() as s:
        assert [r["kept"] for r in s.sql(query).to_pylist()] == expected
    with SparkEngine(spark_remote).session() as s:
        assert [r["kept"] for r in s.sql(query).to_pylist()] == expected


def test_null_safe_joins_are_hash_joins_on_spark(spark_remote: str) -> None:
    """Silver dedupes and picks the newest row per key with ``IS NOT DISTINCT FROM`` joins;
    on Spark they must stay hash joins (Sail planned the spelled-out form as nested loops:
    silver claims took 144 s for 170k rows) and still match NULL with NULL."""
    query = """
        SELECT l.k, l.t, r.v FROM (VALUES ('a', 1), ('b', NULL), (NULL, 2), (NULL, NULL)) AS l(k, t)
        JOIN (VALUES ('a', 1, 'x'), ('b', NULL, 'y'), (NULL, 2, 'z'), ('c', 3, 'w')) AS r(k, t, v)
          ON l.k IS NOT DISTINCT FROM r.k AND l.t IS NOT DISTINCT FROM r.t
        ORDER BY v"""
    (statement,) = to_spark(query)
    assert "<=>" in statement and "DISTINCT FROM" not in statement
    with SparkEngine(spark_remote).session() as s:
        assert [r["v"] for r in s.sql(query).to_pylist()] == ["x", "y", "z"]
        plan = s.spark.sql(f"EXPLAIN {statement}").collect()[0][0]
    assert "HashJoin" in plan and "NestedLoopJoin" not in plan, plan
    with DuckDBEngine().session() as s:
        assert [r["v"] for r in s.sql(query).to_pylist()] == ["x", "y", "z"]


def test_a_materialised_relation_is_computed_once_where_the_server_does_not_cache(
    spark_remote: str, tmp_path: Path
) -> None:
    """Sail accepts ``cache()`` and recomputes the relation for each statement that reads it;
    there the session writes it to its scratch folder and reads that back, so a relation of
    random values reads the same twice, an empty one keeps its columns, and the folder is
    gone when the session closes."""
    scratch = tmp_path / "_scratch"
    engine = SparkEngine(spark_remote, str(scratch))
    with engine.session() as s:
        assert engine.caches(s.spark) is False  # Sail 0.7 answers no cache query
        assert s.scratch is not None and s.scratch.startswith(str(scratch))
        s.materialize(
            "drawn", "SELECT id, random() AS r FROM (VALUES (1), (2), (3), (4), (5)) AS v(id)"
        )
        first = s.sql("SELECT sum(r) AS total FROM drawn")["total"][0].as_py()
        second = s.sql("SELECT sum(r) AS total FROM drawn")["total"][0].as_py()
        assert first == second
        empty = "SELECT id, CAST(NULL AS TIMESTAMP) AS at, ['x'] AS l FROM drawn WHERE false"
        s.materialize("none", empty)
        s.execute(f"CREATE OR REPLACE TEMP VIEW none_view AS {empty}")
        assert s.columns("none") == s.columns("none_view")  # types survive the Parquet trip
        assert set(s.columns("none")) == {"id", "at", "l"}
        assert s.scalar("SELECT count(*) FROM none") == 0
        # rebuilt from its previous self: each materialisation has its own folder
        s.materialize("drawn", "SELECT id, r FROM drawn WHERE id < 3")
        assert s.scalar("SELECT count(*) FROM drawn") == 2
        assert any(scratch.rglob("*.parquet"))
    assert list(scratch.iterdir()) == []
    # without a scratch folder the session caches as before (nothing is written)
    with SparkEngine(spark_remote).session() as s:
        assert s.scratch is None


def test_the_runner_sql_translates_without_duckdb_only_syntax() -> None:
    for layer in ("silver", "gold"):
        for m in models(layer):
            for statement in to_spark(m.sql):
                assert "GROUP BY ALL" not in statement.upper(), m.name
                assert " USING (" not in statement.upper(), m.name
    assert "LEFT JOIN" in to_spark("SELECT *, k IN (SELECT x FROM r) AS f FROM s")[0]
    assert (
        "QUALIFY" not in to_spark("SELECT a FROM t QUALIFY row_number() OVER (ORDER BY a) = 1")[0]
    )


def test_an_unreachable_spark_server_fails_the_run_fast_and_keeps_the_token_secret(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("RCMLAKE_SPARK_REMOTE", f"sc://127.0.0.1:{port}/;token=SECRET-TOKEN-42")
    project = make_project(workdir, run={"engine": "spark", "retries": 1})
    started = time.monotonic()
    result = project.run()
    assert time.monotonic() - started < 120
    assert result.exit_code == 1
    silver = [r for r in result.records if r.layer == "silver"]
    assert silver and all(r.status == "failed" for r in silver)
    assert all(
        f"cannot reach Spark Connect at sc://127.0.0.1:{port}" in (r.error or "") for r in silver
    )
    assert all(r.transient for r in silver)
    # bronze ran in this process all the same
    assert {r.status for r in result.records if r.layer == "bronze"} <= {
        "success",
        "no_change",
        "skipped",
    }
    assert "SECRET-TOKEN-42" not in repr(result.records)


def test_a_remote_that_is_not_spark_connect_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RCMLAKE_SPARK_REMOTE", "http://spark:15002")
    with pytest.raises(ConfigError, match="not a Spark Connect URL"):
        make_project(tmp_path, run={"engine": "spark"})
    with pytest.raises(ConfigError):  # in the file, the schema says so
        make_project(tmp_path, run={"engine": "spark", "spark_remote": "spark:15002"})
