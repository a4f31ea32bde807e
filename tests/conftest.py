"""Shared fixtures: synthetic hospitals on SQLite, MariaDB and PostgreSQL, and projects over them.

Services: in CI (``CI=true``) a test that needs MariaDB or PostgreSQL fails
when the service is down; elsewhere it is skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from rcmlake.config import parse_config
from rcmlake.demo import demo_config
from rcmlake.project import Project
from rcmlake.synth import SynthSpec, synthesize

SERVERS = {
    "mysql": "mysql+pymysql://root@127.0.0.1:3306/",
    "postgres": "postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
}
# without 835 remittances (tests/integration/test_remittances.py synthesizes them, and the
# kill trials run with them): every other test's runs stay quick
SMALL = SynthSpec(seed=11, transactions=1_200, months=4, defect_rate=0.01, remittances=False)


def service_or_skip(kind: str) -> None:
    try:
        engine = sa.create_engine(SERVERS[kind])
        with engine.connect():
            pass
        engine.dispose()
    except sa.exc.OperationalError as exc:
        message = f"{kind} on loopback is not reachable: {type(exc.orig).__name__}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def drop_database(kind: str, name: str) -> None:
    engine = sa.create_engine(SERVERS[kind], isolation_level="AUTOCOMMIT")
    with engine.connect() as con:
        if kind == "postgres":
            con.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        else:
            con.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
    engine.dispose()


@pytest.fixture(scope="session")
def synth_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small synthetic set per session; tests copy it."""
    out = tmp_path_factory.mktemp("synth")
    synthesize(out, SMALL)
    return out


@pytest.fixture
def workdir(tmp_path: Path, synth_template: Path) -> Path:
    shutil.copytree(synth_template, tmp_path, dirs_exist_ok=True)
    return tmp_path


class Backend:
    """Where the synthetic EMR databases live for one test."""

    def __init__(self, kind: str, workdir: Path):
        self.kind = kind
        self.workdir = workdir
        self.suffix = uuid.uuid4().hex[:8]
        self.databases: list[str] = []

    def target(self) -> str | None:
        if self.kind == "sqlite":
            return None
        base = SERVERS[self.kind].rsplit("/", 1)[0].replace("+pymysql", "").replace("+psycopg", "")
        return f"{base}/{{datasource}}_{self.suffix}"

    def urls(self) -> dict[str, tuple[str, str]]:
        if self.kind == "sqlite":
            return {}
        scheme = {
            "mysql": "mysql://root@127.0.0.1:3306",
            "postgres": "postgresql://postgres@127.0.0.1:5432",
        }[self.kind]
        return {ds: (self.kind, f"{scheme}/{ds}_{self.suffix}") for ds in SMALL.datasources}

    def synth(self, update: bool = False) -> dict:
        if self.kind != "sqlite" and not self.databases:
            self.databases = [f"{ds}_{self.suffix}" for ds in SMALL.datasources]
        return synthesize(
            self.workdir, None if update else SMALL, target=self.target(), update=update
        ).manifest

    def cleanup(self) -> None:
        for db in self.databases:
            drop_database(self.kind, db)


@pytest.fixture(params=["sqlite", "mysql", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param != "sqlite":
        request.applymarker(pytest.mark.services)
        service_or_skip(request.param)
    b = Backend(request.param, tmp_path)
    yield b
    b.cleanup()


def make_project(
    workdir: Path, urls: dict[str, tuple[str, str]] | None = None, **overrides: object
) -> Project:
    raw = yaml.safe_load(demo_config(urls))
    raw["run"] = {"backoff_seconds": 0.01, "retries": 2, **overrides.pop("run", {})}  # type: ignore[dict-item]
    raw.update(overrides)
    (workdir / "rcmlake.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    return Project(parse_config(raw, base_dir=workdir))


@pytest.fixture
def project_factory() -> Callable[..., Project]:
    return make_project


@pytest.fixture(scope="session")
def spark_remote() -> Iterator[str]:
    """A Spark Connect server on loopback (Sail, from PyPI: reads, writes and MERGEs Delta)
    for the session's Spark tests; its URL."""
    from pysail.spark import SparkConnectServer

    server = SparkConnectServer("127.0.0.1", 0)
    server.start(background=True)
    host, port = server.listening_address
    yield f"sc://{host}:{port}"
    server.stop()


@pytest.fixture(params=["duckdb", "spark"])
def engine_run(request: pytest.FixtureRequest) -> dict[str, object]:
    """``run`` settings selecting each engine in turn: a test taking it runs on both."""
    if request.param == "duckdb":
        return {"engine": "duckdb"}
    return {"engine": "spark", "spark_remote": request.getfixturevalue("spark_remote")}
