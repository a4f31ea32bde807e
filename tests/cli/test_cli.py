"""The command line: every command has help and is documented; the demo works twice; exit codes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rcmlake.cli.app import app

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = sorted(c.name or c.callback.__name__ for c in app.registered_commands)  # type: ignore[union-attr]
runner = CliRunner()


def rcmlake(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rcmlake", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "160", **(env or {})},
        timeout=600,
        check=False,
    )


def test_the_commands_the_issues_name_exist() -> None:
    assert {
        "synth",
        "run",
        "demo",
        "status",
        "sql",
        "report",
        "quality",
        "export",
        "schema",
    } <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_and_is_in_the_readme(command: str) -> None:
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output and len(result.output) > 200
    readme = (ROOT / "README.md").read_text()
    assert re.search(rf"rcmlake {command}\b", readme), (
        f"`rcmlake {command}` is not documented in README.md"
    )


def test_demo_twice_then_status_sql_report_without_flags(tmp_path: Path) -> None:
    first = rcmlake("demo", "--transactions", "1500", cwd=tmp_path)
    assert first.returncode == 0, first.stderr + first.stdout
    assert "headline KPIs" in first.stdout and "dashboard:" in first.stdout
    assert first.stdout.rstrip().splitlines()[-1].startswith("dashboard:")
    assert (tmp_path / "rcmlake.yaml").exists() and (
        tmp_path / "lake" / "gold" / "fact_claim"
    ).is_dir()
    second = rcmlake("demo", "--transactions", "1500", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "already there, reused" in second.stdout
    assert (
        "success" not in second.stdout.split("headline KPIs")[0]
    )  # nothing new: every load is no_change
    status = rcmlake("status", cwd=tmp_path)
    assert status.returncode == 0 and "no_change" in status.stdout
    out = rcmlake("sql", "SELECT count(*) AS n FROM fact_claim", "--format", "csv", cwd=tmp_path)
    assert (
        out.returncode == 0
        and out.stdout.splitlines()[0] == '"n"'
        and int(out.stdout.splitlines()[1]) > 0
    )
    parquet = rcmlake(
        "sql", "SELECT * FROM mart_kpi_monthly", "-f", "parquet", "-o", "kpi.parquet", cwd=tmp_path
    )
    assert parquet.returncode == 0 and (tmp_path / "kpi.parquet").stat().st_size > 0
    rep = rcmlake("report", cwd=tmp_path)
    assert rep.returncode == 0 and (tmp_path / "rcmlake-report.html").exists()
    q = rcmlake("quality", cwd=tmp_path)
    assert q.returncode == 0 and "unique_key" in q.stdout
    assert "quarantined rows" in q.stdout and "rule hits" in q.stdout
    # roll back the demo's first run: the lake empties, and a run loads it all again
    runs = rcmlake(
        "sql",
        "SELECT run_id FROM audit_loads GROUP BY 1 ORDER BY min(started_at)",
        "-f",
        "csv",
        cwd=tmp_path,
    ).stdout.splitlines()[1:]
    first_run = runs[0].strip('"')
    before = rcmlake("sql", "SELECT count(*) FROM fact_claim", "-f", "csv", cwd=tmp_path).stdout
    back = rcmlake("rollback", first_run, cwd=tmp_path)
    assert back.returncode == 0, back.stderr
    assert "tables moved" in back.stdout and "silver/claims" in back.stdout.replace("\n", "")
    assert rcmlake("run", cwd=tmp_path).returncode == 0
    assert (
        rcmlake("sql", "SELECT count(*) FROM fact_claim", "-f", "csv", cwd=tmp_path).stdout
        == before
    )
    unknown = rcmlake("rollback", "run-nope", cwd=tmp_path)
    assert unknown.returncode == 2 and "no run 'run-nope' in the audit log" in unknown.stderr
    # the lifecycle commands
    hist = rcmlake("history", "silver/claims", cwd=tmp_path)
    rows = [line for line in hist.stdout.splitlines() if re.match(r"│\s+\d+ │", line)]
    assert hist.returncode == 0 and len(rows) >= 3  # built, rolled back, built again
    releases = rcmlake("history", cwd=tmp_path)
    assert releases.returncode == 0 and "gold releases" in releases.stdout
    old = rcmlake(
        "sql", "SELECT count(*) FROM fact_claim", "--as-of", "1", "-f", "csv", cwd=tmp_path
    )
    assert old.returncode == 0 and old.stdout == before
    vac = rcmlake("vacuum", "--retain-hours", "0", cwd=tmp_path)
    assert vac.returncode == 0 and "files deleted" in vac.stdout, vac.stderr
    assert (
        rcmlake("sql", "SELECT count(*) FROM fact_claim", "-f", "csv", cwd=tmp_path).stdout
        == before
    )


def test_exit_codes_and_one_line_errors(tmp_path: Path) -> None:
    missing = rcmlake("status", cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr.strip().startswith("Error:") and "config file not found" in missing.stderr
    assert "Traceback" not in missing.stderr
    (tmp_path / "rcmlake.yaml").write_text("lake: lake\nsources: {a: {type: oracle, url: x}}\n")
    bad = rcmlake("run", cwd=tmp_path)
    assert bad.returncode == 2 and "allowed" in bad.stderr
    (tmp_path / "rcmlake.yaml").write_text("lake: lake\n")
    layer = rcmlake("run", "--layer", "platinum", cwd=tmp_path)
    assert layer.returncode == 2 and "unknown layer 'platinum'" in layer.stderr
    sql = rcmlake("sql", "SELECT * FROM nowhere", cwd=tmp_path)
    assert sql.returncode == 1 and sql.stderr.startswith("Error: DuckDB")


def test_a_failed_load_exits_1(tmp_path: Path) -> None:
    assert rcmlake("synth", "--transactions", "500", "--months", "2", cwd=tmp_path).returncode == 0
    from rcmlake.demo import demo_config

    (tmp_path / "rcmlake.yaml").write_text(
        demo_config({"hospital_b": ("mysql", "mysql://root@127.0.0.1:9/none")})
    )
    result = rcmlake("run", "--layer", "bronze", cwd=tmp_path)
    assert result.returncode == 1
    assert (
        "hospital_b.patients: cannot connect" in result.stdout.replace("\n", " ")
        or "cannot connect" in result.stdout
    )


def test_secrets_never_reach_output_or_lake(tmp_path: Path) -> None:
    assert rcmlake("synth", "--transactions", "500", "--months", "2", cwd=tmp_path).returncode == 0
    from rcmlake.demo import demo_config

    config = demo_config({"hospital_b": ("mysql", "mysql://etl:${RCM_TEST_PW}@127.0.0.1:9/none")})
    (tmp_path / "rcmlake.yaml").write_text(config)
    result = rcmlake(
        "run", "--layer", "bronze", cwd=tmp_path, env={"RCM_TEST_PW": "hunter2-secret"}
    )
    assert "hunter2-secret" not in result.stdout + result.stderr
    for f in (tmp_path / "lake").rglob("*"):
        if f.is_file():
            assert b"hunter2-secret" not in f.read_bytes(), f
    env = {k: v for k, v in os.environ.items() if k != "RCM_TEST_PW"}
    unset = subprocess.run(
        [sys.executable, "-m", "rcmlake", "run", "--layer", "bronze"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert (
        "environment variable RCM_TEST_PW is not set"
        in unset.stdout.replace("\n", " ") + unset.stderr
    )


def test_synth_writes_as_many_hospitals_as_asked(tmp_path: Path) -> None:
    out = rcmlake(
        "synth", "--transactions", "300", "--months", "2", "--hospitals", "3", cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in (tmp_path / "sources").glob("*.db")) == [
        "hospital_a.db",
        "hospital_b.db",
        "hospital_c.db",
    ]
    assert (tmp_path / "landing" / "remittances" / "hospital3_2025_02.835").exists()
    bad = rcmlake("synth", "--hospitals", "27", cwd=tmp_path)
    assert bad.returncode == 2 and "hospitals" in bad.stderr + bad.stdout
