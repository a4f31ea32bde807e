"""The pipeline as an Airflow 3 DAG: the file ``rcmlake airflow-dag`` writes, parsed by
Airflow's own DagBag, and run end to end with ``dag.test()`` against a real Airflow
metadata database (SQLite, migrated by ``airflow db migrate``). Airflow runs in
subprocesses with their own AIRFLOW_HOME (tests/integration/airflow_driver.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pytest
from scripts.kill_trials import differing

from rcmlake.airflow import plan, retryable, run_id_for
from rcmlake.config import load_config
from rcmlake.errors import (
    CommitConflict,
    ConfigError,
    FileRejected,
    LakeLocked,
    QualityError,
    SchemaDriftError,
    SourceAuthError,
    SourceUnavailable,
    StepFailed,
)
from rcmlake.layers.bronze import bronze_loads, bronze_path, feed_paths
from rcmlake.layers.silver import inputs
from rcmlake.project import Project
from rcmlake.storage.lease import current
from rcmlake.transforms import models
from tests.conftest import make_project
from tests.integration.s3 import SECRET, s3_project, upload_landing

pytest.importorskip("airflow", reason="Airflow is in the dev extra: pip install -e .[dev]")

ROOT = Path(__file__).resolve().parents[2]
WHEN = "2026-11-30T02:00:00+00:00"
WORK = ("bronze", "silver", "gold", "report")


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A migrated Airflow metadata database and the ``rcmlake`` pool, for this module: the
    environment variables that point Airflow at them."""
    home = tmp_path_factory.mktemp("airflow-home")
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "RCMLAKE_FAULTS": "",
    }
    airflow = str(Path(sys.executable).with_name("airflow"))
    for args in (["db", "migrate"], ["pools", "set", "rcmlake", "2", "rcmlake loads"]):
        done = subprocess.run(
            [airflow, *args], env={**os.environ, **env}, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr[-2000:]
    yield env


def write_dag(workdir: Path, dag_id: str) -> Path:
    """The DAG file, written by the CLI as a user would."""
    out = workdir / "dags" / f"{dag_id}.py"
    done = subprocess.run(
        [
            *(sys.executable, "-m", "rcmlake", "airflow-dag", "--config", "rcmlake.yaml"),
            *("--out", str(out), "--dag-id", dag_id, "--schedule", "@daily"),
        ],
        cwd=workdir,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return out


def driver(
    env: dict[str, str], dags: Path, *args: str, faults: str = ""
) -> tuple[int, dict[str, Any] | None, str]:
    """Run the Airflow side (with this process's environment as it is now: credentials a
    test put there); returns (exit code, its RESULT, its log)."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.integration.airflow_driver", *args],
        cwd=ROOT,
        env={
            **os.environ,
            **env,
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "RCMLAKE_FAULTS": faults,
        },
        capture_output=True,
        text=True,
        timeout=900,
    )
    lines = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    result = json.loads(lines[-1].removeprefix("RESULT ")) if lines else None
    return done.returncode, result, done.stdout + done.stderr


def twin(tmp_path: Path, synth_template: Path, name: str, **overrides: Any) -> Project:
    shutil.copytree(synth_template, tmp_path / name)
    return make_project(tmp_path / name, **overrides)


def audit_runs(project: Project) -> set[str]:
    return set(pc.unique(project.audit.read()["run_id"]).to_pylist())


def assert_clean_dag_run(result: dict[str, Any] | None, dag_id: str, lake: Project) -> None:
    """Every task succeeded at its first try (``check`` skipped: nothing failed), under one
    rcmlake run id derived from the Airflow run, and the teardown gave the lease back."""
    assert result and result["state"] == "success"
    states = {t: v["state"] for t, v in result["tasks"].items()}
    assert states.pop("check") == "skipped"
    assert set(states.values()) == {"success"}, states
    assert {v["tries"] for t, v in result["tasks"].items() if t != "check"} == {1}
    at = datetime.fromisoformat(WHEN)
    assert audit_runs(lake) == {run_id_for(dag_id, result["run_id"], at)}
    assert current(lake.lake.root) is None


def test_plan_loads_each_table_once_and_builds_entities_after_their_inputs(
    tmp_path: Path, synth_template: Path
) -> None:
    project = twin(tmp_path, synth_template, "plan")
    config = project.config
    steps = plan(config)
    ids = [s.task_id for s in steps]
    by_id = {s.task_id: s for s in steps}
    assert len(ids) == len(set(ids))
    # every task comes after what it waits for
    for i, step in enumerate(steps):
        assert all(ids.index(up) < i for up in step.upstream), step

    # one bronze task per load; no two loads write one bronze table
    bronze = {s.target: s for s in steps if s.layer == "bronze"}
    assert set(bronze) == set(bronze_loads(config))
    writer: dict[str, str] = {}
    for name, source in config.sources.items():
        for t in source.tables:
            if t.active:
                writer[bronze_path(name, t.target_name)] = f"{name}.{t.target_name}"
    for name, feed in config.files.items():
        for ds in feed.patterns:
            for path in feed_paths(ds, name, feed):
                assert path not in writer, f"{path} written by two loads"
                writer[path] = f"files.{name}"
    assert "hospital_a.patients" in bronze and "files.claims" in bronze and "codesets" in bronze

    # a silver entity waits for the loads of its inputs and for the entities it reads
    order = [m.name for m in models("silver")]
    for m in models("silver"):
        step = by_id[f"silver.{m.name}"]
        for _, path in inputs(config, m):
            assert f"bronze.{writer.get(path, 'codesets')}" in step.upstream, (m.name, path)
        text = m.sql
        for earlier in order[: order.index(m.name)]:
            if f"silver.{earlier}" in text:
                assert f"silver.{earlier}" in step.upstream, (m.name, earlier)
    assert "bronze.hospital_a.patients" in by_id["silver.patients"].upstream
    assert "bronze.files.claims" in by_id["silver.claims"].upstream
    assert set(by_id["gold"].upstream) == {f"silver.{n}" for n in order}
    work = {s.task_id for s in steps if s.layer in WORK}
    assert set(by_id["release"].upstream) == {"lease", *work}
    assert set(by_id["check"].upstream) == work

    # a step names a known load or entity; --only a known name
    with pytest.raises(ConfigError, match=r"bronze step 'hospital_a\.nope' is not one of"):
        project.step("bronze", "hospital_a.nope")
    with pytest.raises(ConfigError, match="silver step 'nope'"):
        project.step("silver", "nope")
    with pytest.raises(ConfigError, match="--only 'hospital_z' names no source"):
        project.run(["bronze"], only={"hospital_z"})


def test_a_table_no_longer_loaded_has_no_task_and_nothing_waits_for_it(
    tmp_path: Path, synth_template: Path
) -> None:
    import yaml

    from rcmlake.config import parse_config

    twin(tmp_path, synth_template, "inactive")
    raw = yaml.safe_load((tmp_path / "inactive" / "rcmlake.yaml").read_text())
    for t in raw["sources"]["hospital_b"]["tables"]:
        if t["name"] == "patients":
            t["active"] = False
    steps = plan(parse_config(raw, base_dir=tmp_path / "inactive"))
    ids = {s.task_id for s in steps}
    assert "bronze.hospital_b.patients" not in ids
    assert all(up in ids for s in steps for up in s.upstream)
    patients = next(s for s in steps if s.task_id == "silver.patients")
    assert patients.upstream == ("bronze.hospital_a.patients",)


def test_what_airflow_retries() -> None:
    for exc in (SourceUnavailable("down"), CommitConflict("raced"), LakeLocked("held")):
        assert retryable(exc), exc
    transient = StepFailed("every failed load was transient")
    transient.transient = True
    assert retryable(transient)
    for exc in (
        QualityError("bad"),
        SchemaDriftError("drift"),
        FileRejected("header"),
        SourceAuthError("refused"),
        ConfigError("typo"),
        StepFailed("a load failed for good"),
    ):
        assert not retryable(exc), exc


def test_the_lease_task_outlasts_a_dead_holder_and_refuses_a_live_one(tmp_path: Path) -> None:
    from rcmlake.storage.lease import Lease

    project = make_project(tmp_path)
    dag = Project(project.config, run_id="run-x", lease_owner="airflow:dag:run")
    root = project.lake.root
    # a killed holder: its lease is never renewed again, and expires
    Lease(root, owner="killed-run", ttl=1.5, process_bound=False).acquire()
    started = time.monotonic()
    dag.claim_lease(wait=10)
    assert 1.0 < time.monotonic() - started < 10
    holder = current(root)
    assert holder is not None and holder.owner == "airflow:dag:run"
    dag.release_lease()
    # a live holder renews its lease: the wait ends in LakeLocked naming it
    live = Lease(root, owner="live-run", ttl=1.0, process_bound=False)
    with live.held(), pytest.raises(LakeLocked, match="live-run"):
        dag.claim_lease(wait=2.5)


def test_generated_dag_parses_with_its_tasks_pools_and_retries(
    tmp_path: Path, synth_template: Path, airflow_home: dict[str, str]
) -> None:
    project = twin(tmp_path, synth_template, "parse", run={"retries": 4, "backoff_seconds": 2})
    dag_file = write_dag(tmp_path / "parse", "rcmlake_parse")
    assert "dag_from_config(" in dag_file.read_text()

    code, result, log = driver(airflow_home, dag_file.parent, "describe", str(dag_file.parent))
    assert code == 0 and result, log[-4000:]
    assert result["import_errors"] == {}
    dag = result["dags"]["rcmlake_parse"]
    assert dag["max_active_runs"] == 1
    tasks = dag["tasks"]
    steps = plan(project.config)
    assert set(tasks) == {s.task_id for s in steps}
    for step in steps:
        task = tasks[step.task_id]
        assert task["upstream"] == sorted(step.upstream), step.task_id
        if step.layer in WORK:
            assert task["pool"] == "rcmlake", step.task_id
        if step.layer in (*WORK, "lease"):
            # run.retries attempts = 1 + 3 retries, 2 s doubling, at most 60 s
            assert task["retries"] == 3, step.task_id
            assert task["retry_delay"] == 2.0
            assert task["retry_exponential_backoff"] == 2.0
            assert task["max_retry_delay"] == 60.0
        else:
            assert task["retries"] == 0, step.task_id
    assert tasks["lease"]["is_setup"] and tasks["release"]["is_teardown"]
    assert tasks["check"]["trigger_rule"] == "one_failed"
    assert tasks["release"]["trigger_rule"] == "all_done_setup_success"
    assert tasks["silver.claims"]["trigger_rule"] == "all_done"  # builds when a load failed
    assert tasks["gold"]["trigger_rule"] == "all_done"
    assert tasks["bronze.hospital_a.patients"]["trigger_rule"] == "all_success"
    assert tasks["report"]["trigger_rule"] == "all_success"


@pytest.mark.slow
def test_killed_task_then_the_retried_dag_run_ends_as_a_clean_run(
    tmp_path: Path, synth_template: Path, airflow_home: dict[str, str]
) -> None:
    crashed = twin(tmp_path, synth_template, "crashed")
    clean = twin(tmp_path, synth_template, "clean")
    dag_file = write_dag(tmp_path / "crashed", "rcmlake_killed")

    # the worker dies (SIGKILL) in the third silver task, after its commit, before its audit
    code, _, log = driver(
        airflow_home, dag_file.parent, "test", str(dag_file), WHEN, faults="silver.after_commit:3"
    )
    assert code == -9, log[-4000:]
    left = current(crashed.lake.root)
    assert left is not None and left.owner.startswith("airflow:rcmlake_killed:")

    # the same DAG run again: its tasks take their own lease back and finish the job, as
    # the same rcmlake run
    code, result, log = driver(airflow_home, dag_file.parent, "test", str(dag_file), WHEN)
    assert code == 0, log[-4000:]
    assert_clean_dag_run(result, "rcmlake_killed", crashed)
    assert clean.run().exit_code == 0
    assert differing(crashed, clean) == []


@pytest.mark.slow
def test_transient_failures_are_retried_and_quality_failures_are_not(
    tmp_path: Path, synth_template: Path, airflow_home: dict[str, str]
) -> None:
    down = {"hospital_b": ("mysql", "mysql://root@127.0.0.1:1/hospital_b")}  # port 1: refused
    failing = twin(tmp_path, synth_template, "failing", urls=down)
    same = twin(tmp_path, synth_template, "cli", urls=down)
    for folder in ("failing", "cli"):  # a claims file whose header is not the layout's
        (tmp_path / folder / "landing/claims/hospital1_bad.csv").write_text("foo,bar\n1,2\n")
    dag_file = write_dag(tmp_path / "failing", "rcmlake_failing")

    code, result, log = driver(airflow_home, dag_file.parent, "test", str(dag_file), WHEN)
    assert code == 0 and result, log[-4000:]
    assert result["state"] == "failed"
    tasks = result["tasks"]
    # unreachable database: transient, so tried run.retries (2) times
    down_tasks = [t for t in tasks if t.startswith("bronze.hospital_b.")]
    assert len(down_tasks) == 5
    for task in down_tasks:
        assert tasks[task] == {"state": "failed", "tries": 2}, task
    # a rejected file is bad data: failed at once, no retry
    assert tasks["bronze.files.claims"] == {"state": "failed", "tries": 1}
    # the rest of the run went on, as `rcmlake run` does, and the run still ends failed
    assert tasks["bronze.hospital_a.patients"]["state"] == "success"
    assert {v["state"] for k, v in tasks.items() if k.startswith(("silver.", "gold"))} == {
        "success"
    }
    assert tasks["check"]["state"] == "failed"
    assert tasks["release"]["state"] == "success"
    assert current(failing.lake.root) is None

    assert same.run().exit_code == 1
    assert differing(failing, same) == []
    rejected = tmp_path / "failing" / "landing/rejected"
    assert [p.name for p in rejected.rglob("*.csv")] == ["hospital1_bad.csv"]


@pytest.mark.slow
def test_dag_run_on_an_s3_lake_builds_the_lake_a_cli_run_builds(
    tmp_path: Path, synth_template: Path, airflow_home: dict[str, str], bucket: str
) -> None:
    shutil.copytree(synth_template, tmp_path / "s3")
    upload_landing(tmp_path / "s3", bucket)
    remote = s3_project(tmp_path / "s3", bucket)
    clean = twin(tmp_path, synth_template, "clean")
    dag_file = write_dag(tmp_path / "s3", "rcmlake_s3")

    code, result, log = driver(airflow_home, dag_file.parent, "test", str(dag_file), WHEN)
    assert code == 0, log[-4000:]
    assert_clean_dag_run(result, "rcmlake_s3", remote)
    assert clean.run().exit_code == 0
    assert differing(remote, clean) == []
    assert (tmp_path / "s3" / "rcmlake-report.html").exists()
    assert SECRET not in log  # the credentials reached the tasks through the environment only


def test_dag_factory_reads_the_config_it_is_given(tmp_path: Path, synth_template: Path) -> None:
    """The path in the DAG file is absolute: Airflow parses it from any working folder."""
    twin(tmp_path, synth_template, "abs")
    dag_file = write_dag(tmp_path / "abs", "rcmlake_abs")
    text = dag_file.read_text()
    config_path = str((tmp_path / "abs" / "rcmlake.yaml").resolve())
    assert repr(config_path) in text
    assert load_config(config_path).name
