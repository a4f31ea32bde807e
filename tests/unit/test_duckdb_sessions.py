"""Sessions of one DuckDB engine share its database but nothing else: each has a catalog of
its own, closed with it; the analyst's lock-down takes a database of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pytest

from rcmlake.engines.duckdb import SPILL_PREFIX, DuckDBEngine, size_bytes, spill_folder
from rcmlake.errors import EngineError
from rcmlake.serve.access import lock_down


def _catalogs(engine: DuckDBEngine) -> set[str]:
    names = engine._database().execute("SELECT database_name FROM duckdb_databases()").fetchall()
    return {n for (n,) in names if n.startswith("session_")}


def test_sessions_of_one_engine_keep_their_relations_apart() -> None:
    engine = DuckDBEngine("1GB", 2)
    a, b = engine.session(), engine.session()
    for s, value in ((a, 1), (b, 2)):
        s.materialize("silver.claims", f"SELECT {value} AS v, surrogate_key('c1') AS k")
        s.register("params", pa.table({"p": [value]}))
        s.materialize("built", "SELECT p FROM params")
    assert a.sql("SELECT v FROM silver.claims").column("v").to_pylist() == [1]
    assert b.sql("SELECT v FROM silver.claims").column("v").to_pylist() == [2]
    assert a.scalar("SELECT p FROM built") == 1 and b.scalar("SELECT p FROM built") == 2
    # the functions the models call are every session's, and agree
    assert a.scalar("SELECT k FROM silver.claims") == b.scalar("SELECT k FROM silver.claims")
    assert a.scalar("SELECT current_setting('TimeZone')") == "UTC"
    assert len(_catalogs(engine)) == 2
    a.close()
    b.close()
    assert _catalogs(engine) == set()  # a closed session leaves nothing in the database


def test_parallel_sessions_build_the_same_names_without_clashing() -> None:
    engine = DuckDBEngine(threads=2)

    def build(i: int) -> int:
        with engine.session() as s:
            s.materialize("bronze.rows", f"SELECT range AS r FROM range({i * 1000})")
            return int(s.scalar("SELECT count(*) FROM bronze.rows"))

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(build, range(1, 9))) == [i * 1000 for i in range(1, 9)]
    assert _catalogs(engine) == set()


def test_lock_down_needs_a_private_session() -> None:
    engine = DuckDBEngine()
    with engine.session() as shared, pytest.raises(AssertionError, match="private session"):
        lock_down(shared)
    with engine.session(private=True) as private:
        lock_down(private)
        with pytest.raises(EngineError, match="file system operations are disabled"):
            private.sql("SELECT * FROM read_csv('/etc/passwd')")
    with engine.session() as after:  # the engine's own sessions still read files
        assert after.scalar("SELECT count(*) FROM glob('/etc/*')") > 0


def test_a_killed_runs_spill_folder_is_removed_by_the_next_engine(tmp_path: Path) -> None:
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead = tmp_path / f"{SPILL_PREFIX}{gone.stdout.strip()}-abc"
    (dead / "duckdb_temp_storage").mkdir(parents=True)
    (dead / "duckdb_temp_storage" / "block").write_bytes(b"x" * 1024)
    alive = tmp_path / f"{SPILL_PREFIX}{os.getpid()}-def"
    alive.mkdir()
    unnamed = tmp_path / f"{SPILL_PREFIX}old"  # no pid in its name: not ours to judge
    unnamed.mkdir()
    other = tmp_path / "someone-elses"
    other.mkdir()

    made = Path(spill_folder(str(tmp_path)))

    assert not dead.exists()
    assert alive.exists() and unnamed.exists() and other.exists()
    assert made.parent == tmp_path and made.name.startswith(f"{SPILL_PREFIX}{os.getpid()}-")
    engine = DuckDBEngine("1GB")
    assert Path(engine.spill_dir).name.startswith(f"{SPILL_PREFIX}{os.getpid()}-")


def test_memory_held_outside_the_engine_lowers_its_limit_and_evicts_what_is_over() -> None:
    """An 835 parse holds gigabytes in Python beside bronze's EMR loads: while it does, the
    engine's limit drops by that much (nested holds add up, never under a quarter of the
    limit), DuckDB spills what is over it at once, and the limit is back afterwards."""
    engine = DuckDBEngine("2GB", 2)
    assert size_bytes("2GB") == 2 * 10**9 and size_bytes("1.5 GiB") == 3 * 2**29
    with pytest.raises(ValueError, match="not a size"):
        size_bytes("lots")

    with engine.session() as s:
        s.materialize(
            "held", "SELECT range AS i, repeat('x', 40) || range AS t FROM range(12000000)"
        )
        usage = "SELECT sum(memory_usage_bytes), sum(temporary_storage_bytes) FROM duckdb_memory()"
        assert s.scalar("SELECT current_setting('memory_limit')") == "1.8 GiB"
        in_memory, spilled = s.sql(usage).to_pylist()[0].values()
        assert in_memory > 600_000_000 and spilled == 0
        with engine.outside(1_500_000_000):
            assert s.scalar("SELECT current_setting('memory_limit')") == "476.8 MiB"
            # at once, not at the next allocation: the table went to the spill folder
            in_memory, spilled = s.sql(usage).to_pylist()[0].values()
            assert in_memory <= 500_000_000 and spilled > 0
            with engine.outside(1_000_000_000):  # 2.5 GB held: a quarter of 2 GB is the floor
                assert s.scalar("SELECT current_setting('memory_limit')") == "476.8 MiB"
            assert s.scalar("SELECT count(*), count(DISTINCT t) FROM held") == 12_000_000
        assert s.scalar("SELECT current_setting('memory_limit')") == "1.8 GiB"
    # an engine whose database opens during a hold opens with the lowered limit
    later = DuckDBEngine("2GB", 2)
    with later.outside(1_000_000_000), later.session() as s:
        assert s.scalar("SELECT current_setting('memory_limit')") == "953.6 MiB"
    # without a configured limit there is nothing to lower (DuckDB's default stays)
    unbounded = DuckDBEngine(None, 2)
    with unbounded.session() as s:
        default = s.scalar("SELECT current_setting('memory_limit')")
        with unbounded.outside(10**9):
            assert s.scalar("SELECT current_setting('memory_limit')") == default


def test_work_held_outside_the_engine_takes_a_thread_from_it() -> None:
    """An 835 parse runs on a thread of its own beside bronze's EMR loads: while it is held,
    the engine runs on one thread fewer (never under one), with or without a memory limit,
    nested holds taking one each, and its threads are back afterwards."""
    threads = "SELECT current_setting('threads')"
    for limit in ("2GB", None):
        engine = DuckDBEngine(limit, 3)
        with engine.session() as s:
            assert s.scalar(threads) == 3
            with engine.outside(10**8):
                assert s.scalar(threads) == 2
                with engine.outside(10**8), engine.outside(0):
                    assert s.scalar(threads) == 1  # three holds on three threads: one stays
                assert s.scalar(threads) == 2
            assert s.scalar(threads) == 3
    # unconfigured, the engine's threads are DuckDB's own count
    default = DuckDBEngine(None)
    with default.session() as s:
        cores = s.scalar(threads)
        with default.outside(10**8):
            assert s.scalar(threads) == max(1, cores - 1)
        assert s.scalar(threads) == cores
    # a database opened during a hold opens with a thread fewer
    later = DuckDBEngine("2GB", 2)
    with later.outside(10**8), later.session() as s:
        assert s.scalar(threads) == 1
    with later.session() as s:
        assert s.scalar(threads) == 2
