"""The same config as an Airflow 3 DAG: one task per bronze load, per silver entity, then gold.

Each task calls the ``Project`` facade (``Project.step``), so the DAG holds no logic of
its own and a task re-run has the guarantees of ``rcmlake run``: every step is
idempotent, so a retried or cleared task, or a whole DAG run started again, ends in the
lake a clean run would. The tasks of one DAG run share one rcmlake run id (``rcmlake
rollback RUN_ID`` undoes the DAG run as one) and one lake lease (taken by the ``lease``
setup task, given back by the ``release`` teardown, whatever happened between), so they
run in parallel while no other run writes the lake.

The shape mirrors ``rcmlake run``: a failed bronze load does not stop silver, which
builds from what bronze holds (one hospital's EMR being down does not hold back the
group's dashboard), and the run still ends failed: the ``check`` task fails when any
task failed. A failure that can pass (an unreachable source, a commit conflict, the lake
held by another run) is retried with exponential backoff, ``run.retries`` attempts from
``run.backoff_seconds``; one that cannot (bad data, schema drift, a quality error, a
config error) fails at once.

Example (what ``rcmlake airflow-dag`` writes into the dags folder)::

    from rcmlake.airflow import dag_from_config

    dag = dag_from_config("/etc/rcmlake/rcmlake.yaml", schedule="@daily")
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rcmlake.config import load_config
from rcmlake.config.models import ProjectConfig
from rcmlake.errors import (
    LakeLocked,
    MissingDependencyError,
    RcmlakeError,
    StepFailed,
    is_transient,
)

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from rcmlake.project import Project, RunResult

log = logging.getLogger(__name__)

DEFAULT_POOL = "rcmlake"
START_DATE = datetime(2025, 1, 1, tzinfo=UTC)
MAX_BACKOFF = timedelta(seconds=60)  # as bronze's own retries (layers.bronze.retrying)


@dataclass(frozen=True)
class Step:
    """One task of the DAG: what it runs (``layer``, ``target``) and what it waits for."""

    task_id: str
    layer: str  # lease, bronze, silver, gold, report, release or check
    target: str | None = None
    upstream: tuple[str, ...] = ()


def plan(config: ProjectConfig) -> list[Step]:
    """The DAG's steps in dependency order, without Airflow (so it is testable and readable).

    Every task runs after the ``lease`` setup (Airflow fails all of them when it failed). A
    silver entity waits for the bronze loads that write its inputs and for the entities
    before it that it reads; gold waits for every entity.
    """
    from rcmlake.layers.bronze import bronze_loads
    from rcmlake.layers.silver import inputs, upstream
    from rcmlake.transforms import models

    loads = bronze_loads(config)
    # bronze path -> the load that writes it (a table no longer loaded has none: its
    # entity reads what bronze holds of it, as in `rcmlake run`)
    writes = {path: key for key, load in loads.items() for path in load.paths}
    lease = Step("lease", "lease")
    steps = [lease]
    steps += [Step(f"bronze.{key}", "bronze", key, (lease.task_id,)) for key in loads]
    for m in models("silver"):
        feeding = {writes[path] for _, path in inputs(config, m) if path in writes}
        waits = [f"bronze.{key}" for key in sorted(feeding)]
        waits += [f"silver.{name}" for name in upstream(config, m)]
        steps.append(Step(f"silver.{m.name}", "silver", m.name, tuple(waits) or (lease.task_id,)))
    silver = [s.task_id for s in steps if s.layer == "silver"]
    steps.append(Step("gold", "gold", None, tuple(silver)))
    steps.append(Step("report", "report", None, ("gold",)))
    work = tuple(s.task_id for s in steps if s is not lease)
    steps.append(Step("release", "release", None, (lease.task_id, *work)))
    steps.append(Step("check", "check", None, work))
    return steps


def dag_from_config(
    config_path: str | Path,
    *,
    dag_id: str | None = None,
    schedule: str | None = "@daily",
    pool: str = DEFAULT_POOL,
    start_date: datetime = START_DATE,
    tags: tuple[str, ...] = ("rcmlake",),
) -> DAG:
    """An Airflow DAG running ``config_path``'s pipeline (read again at each parse, so a table
    added to the config is a new task at the next parse). Create the pool once, sized to
    ``run.workers``: ``airflow pools set rcmlake 2 "rcmlake loads"`` on 2 cores."""
    try:
        from airflow.providers.standard.operators.python import PythonOperator
        from airflow.sdk import DAG, TriggerRule
    except ImportError as exc:
        raise MissingDependencyError(
            "the Airflow DAG needs Airflow 3: pip install 'rcmlake[airflow]'"
        ) from exc

    path = str(Path(config_path).resolve())
    config = load_config(path)
    run = config.run
    retry: dict[str, Any] = {
        "retries": run.retries - 1,  # run.retries counts attempts, Airflow counts retries
        "retry_delay": timedelta(seconds=run.backoff_seconds),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": MAX_BACKOFF,
    }
    rules = {
        "lease": TriggerRule.ALL_SUCCESS,
        "bronze": TriggerRule.ALL_SUCCESS,
        # built from what bronze holds when a load failed, as `rcmlake run` does (the
        # lease, their indirect setup, must still have succeeded: Airflow checks that)
        "silver": TriggerRule.ALL_DONE,
        "gold": TriggerRule.ALL_DONE,
        "report": TriggerRule.ALL_SUCCESS,
        "release": TriggerRule.ALL_DONE_SETUP_SUCCESS,
        "check": TriggerRule.ONE_FAILED,  # fails the DAG run when any task failed
    }
    dag = DAG(
        dag_id or task_name(config.name),
        schedule=schedule,
        start_date=start_date,
        catchup=False,
        max_active_runs=1,  # runs of one lake hold one lease; a second would only wait
        tags=list(tags),
        doc_md=f"rcmlake pipeline of `{path}` (generated by `rcmlake.airflow`).",
    )
    ops: dict[str, Any] = {}
    for step in plan(config):
        # what follows a setup directly must need it to succeed (Airflow's rule)
        direct = "lease" in step.upstream and step.layer != "release"
        options: dict[str, Any] = {
            "trigger_rule": TriggerRule.ALL_SUCCESS if direct else rules[step.layer]
        }
        if step.layer in ("bronze", "silver", "gold", "report"):
            options.update(pool=pool, **retry)
        elif step.layer == "lease":
            options.update(retry)  # the lake held by another run: wait for it, with backoff
        ops[step.task_id] = PythonOperator(
            task_id=step.task_id,
            dag=dag,
            python_callable=execute,
            op_kwargs={"config_path": path, "layer": step.layer, "target": step.target},
            **options,
        )
        for up in step.upstream:
            ops[up] >> ops[step.task_id]
    ops["release"].as_teardown(setups=ops["lease"])
    ops["lease"].as_setup()
    return dag


def dag_file(
    config_path: str | Path, *, dag_id: str, schedule: str | None, pool: str, slots: int
) -> str:
    """The text of a DAG file for the dags folder: three lines that call the factory."""
    path = str(Path(config_path).resolve())
    return (
        f'"""rcmlake DAG {dag_id}: the pipeline of {path}.\n\n'
        "Written by `rcmlake airflow-dag`. Tasks come from the config each time Airflow parses\n"
        "this file. Create the pool once, sized to run.workers:\n"
        f'    airflow pools set {pool} {slots} "rcmlake loads"\n'
        '"""\n\n'
        "from rcmlake.airflow import dag_from_config\n\n"
        f"dag = dag_from_config({path!r}, dag_id={dag_id!r}, schedule={schedule!r}, "
        f"pool={pool!r})\n"
    )


def task_name(text: str) -> str:
    """``text`` as an Airflow id (letters, digits, ``_ . -``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "rcmlake"


def run_id_for(dag_id: str, airflow_run_id: str, run_after: datetime) -> str:
    """The rcmlake run id of a DAG run: the same for every task and every retry of it, in
    the form of ``rcmlake run``'s ids (``run-<UTC time>-<hash>``)."""
    digest = hashlib.sha256(f"{dag_id}/{airflow_run_id}".encode()).hexdigest()[:8]
    return f"run-{run_after.astimezone(UTC):%Y%m%dT%H%M%S}-{digest}"


def execute(config_path: str, layer: str, target: str | None, **context: Any) -> Any:
    """The callable of every task: one ``Project`` step, its outcome told to Airflow."""
    from airflow.sdk.exceptions import AirflowFailException

    dag_run = context["dag_run"]
    dag_id = dag_run.dag_id
    run_after = getattr(dag_run, "run_after", None) or dag_run.logical_date
    run_id = run_id_for(dag_id, dag_run.run_id, run_after)
    try:
        project = _project(config_path, run_id, f"airflow:{dag_id}:{dag_run.run_id}")
        log.info("rcmlake run %s, step %s %s", run_id, layer, target or "")
        if layer == "lease":
            project.claim_lease(wait=project.config.run.lease_seconds)
            return run_id
        if layer == "release":
            project.release_lease()
            return None
        if layer == "report":
            return str(project.report())
        if layer == "check":
            raise AirflowFailException("a task of this run failed; see its log")
        return _outcome(project.step(layer, target))
    except RcmlakeError as exc:
        if retryable(exc):
            raise  # Airflow retries it with backoff
        raise AirflowFailException(str(exc)) from exc


def retryable(exc: RcmlakeError) -> bool:
    """Whether Airflow should retry a task that raised ``exc``: a transient error, or the
    lake held by another run (which ends; ``rcmlake run`` stops instead, exit 1)."""
    return is_transient(exc) or isinstance(exc, LakeLocked)


def _project(config_path: str, run_id: str, lease_owner: str) -> Project:
    from rcmlake.project import Project

    config = load_config(config_path)
    # one retry policy: Airflow's (run.retries attempts), not Airflow's times rcmlake's
    config = config.model_copy(update={"run": config.run.model_copy(update={"retries": 1})})
    return Project(config, run_id=run_id, lease_owner=lease_owner)


def _outcome(result: RunResult) -> list[dict[str, Any]]:
    """The step's summary (its XCom), or the failure Airflow should act on: retried when
    every failed load may pass on a retry, failed for good otherwise."""
    summary = result.summary()
    for row in summary:
        log.info("%s", row)
    if failed := result.failed:
        message = f"{len(failed)} of {len(result.records)} loads failed: " + "; ".join(
            f"{r.layer} {r.datasource}.{r.table}: {r.error}" for r in failed
        )
        error = StepFailed(message)
        error.transient = all(r.transient for r in failed)
        if not error.transient:
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(message)
        raise error
    return summary
