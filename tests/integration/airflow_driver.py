"""Airflow's side of tests/integration/test_airflow.py, run as a subprocess: Airflow reads its
home, database and dags folder from the environment once, at import, so each test gives it
its own. Prints one line ``RESULT <json>`` after Airflow's logs.

    python -m tests.integration.airflow_driver describe DAGS_FOLDER
    python -m tests.integration.airflow_driver test DAG_FILE 2026-11-30T00:00:00+00:00
"""

from __future__ import annotations

import importlib.util
import json
import sys
from datetime import datetime
from typing import Any


def describe(folder: str) -> dict[str, Any]:
    """Every DAG of the folder as Airflow's parser sees it, task by task."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=folder)
    return {
        "import_errors": {k: str(v) for k, v in bag.import_errors.items()},
        "dags": {
            dag_id: {
                "schedule": str(dag.schedule),
                "max_active_runs": dag.max_active_runs,
                "tasks": {
                    t.task_id: {
                        "upstream": sorted(t.upstream_task_ids),
                        "pool": t.pool,
                        "retries": t.retries,
                        "retry_delay": t.retry_delay.total_seconds(),
                        "retry_exponential_backoff": t.retry_exponential_backoff,
                        "max_retry_delay": t.max_retry_delay.total_seconds()
                        if t.max_retry_delay
                        else None,
                        "trigger_rule": str(t.trigger_rule.value),
                        "is_setup": t.is_setup,
                        "is_teardown": t.is_teardown,
                    }
                    for t in dag.tasks
                },
            }
            for dag_id, dag in bag.dags.items()
        },
    }


def test(dag_file: str, when: str) -> dict[str, Any]:
    """One ``dag.test()`` run at ``when`` (logical date and run-after both, so running it
    again is the same DAG run, as a retry after a lost worker is)."""
    spec = importlib.util.spec_from_file_location("rcmlake_dag_under_test", dag_file)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    at = datetime.fromisoformat(when)
    run = module.dag.test(logical_date=at, run_after=at)
    return {
        "state": str(run.state),
        "run_id": run.run_id,
        "tasks": {
            ti.task_id: {"state": str(ti.state), "tries": ti.try_number}
            for ti in run.get_task_instances()
        },
    }


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    result = describe(*args) if command == "describe" else test(*args)
    print("RESULT " + json.dumps(result), flush=True)
