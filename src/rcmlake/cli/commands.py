"""The commands; each is options → Project → one method → render."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from rcmlake.cli.app import ConfigOpt, RoleOpt, app, console, finish, project, summarize


@app.command()
def synth(
    out: Annotated[
        Path, typer.Option(help="Folder for sources/, landing/ and the manifest.")
    ] = Path("."),
    seed: Annotated[int, typer.Option(help="Same seed, same data.")] = 42,
    transactions: Annotated[
        int, typer.Option(help="Transactions per hospital over the base months.")
    ] = 5_000,
    months: Annotated[int, typer.Option(help="Months of history (one claims file per month).")] = 6,
    defect_rate: Annotated[float, typer.Option(help="Share of rows given a known defect.")] = 0.01,
    hospitals: Annotated[
        int,
        typer.Option(
            min=1,
            max=26,
            help="How many hospitals (hospital_a, hospital_b, …; every second one with "
            "hospital B's patient columns).",
        ),
    ] = 2,
    target: Annotated[
        str | None,
        typer.Option(
            help="Database server URL (mysql://…, postgresql://…) "
            "instead of SQLite files; `{datasource}` names the database."
        ),
    ] = None,
    update: Annotated[
        bool, typer.Option("--update", help="Apply the next month's changes to an existing set.")
    ] = False,
    touch: Annotated[
        float | None,
        typer.Option(
            min=0.01,
            max=1.0,
            help="Edit this share of an existing set's transactions in place (0.01: 1%).",
        ),
    ] = None,
    recent_months: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="With --touch: edit only services of the set's last N months "
            "(still that share of all transactions).",
        ),
    ] = None,
) -> None:
    """Generate synthetic hospitals: EMR databases, monthly claims files, 835 remittances and a
    CPT file."""
    from rcmlake.demo import hospital_names
    from rcmlake.synth import SynthSpec, synthesize
    from rcmlake.synth import touch as touch_rows

    started = time.monotonic()
    if touch is not None:
        edited = touch_rows(out, touch, target=target, recent_months=recent_months)
        rows = [{"datasource": ds, "table": "transactions", "rows": n} for ds, n in edited.items()]
        console().table("synth --touch: rows edited", rows)
        return
    spec = SynthSpec(
        seed=seed,
        transactions=transactions,
        months=months,
        defect_rate=defect_rate,
        datasources=hospital_names(hospitals),
    )
    with console().progress("synth", 1):
        result = synthesize(out, None if update else spec, target=target, update=update)
    rows = [
        {"datasource": ds, "table": t, "rows": n}
        for ds, tables in result.rows.items()
        for t, n in tables.items()
    ]
    rows.append({"datasource": "landing", "table": "files", "rows": len(result.files)})
    console().table(
        f"synth (as of {result.manifest['as_of']}, update {result.manifest['updates']})", rows
    )
    console().info(
        f"done in {time.monotonic() - started:.1f}s; manifest: {out / 'synth_manifest.json'}"
    )


@app.command()
def run(
    config: ConfigOpt = None,
    layer: Annotated[
        list[str] | None,
        typer.Option(
            "--layer", "-l", help="bronze, silver or gold; repeat for several [default: all]."
        ),
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option(
            help="Bronze only for these sources, source.table, feeds, datasources or `codesets`."
        ),
    ] = None,
    engine: Annotated[
        str | None,
        typer.Option(help="Where silver and gold run: duckdb or spark [default: run.engine]."),
    ] = None,
    spark_remote: Annotated[
        str | None,
        typer.Option(
            help="Spark Connect URL sc://host:port [default: run.spark_remote, "
            "$RCMLAKE_SPARK_REMOTE]."
        ),
    ] = None,
) -> None:
    """Run the pipeline: ingest into bronze, build silver, build gold."""
    from rcmlake.project import LAYERS

    started = time.monotonic()
    proj = project(config, engine, spark_remote)
    result = proj.run(layer or list(LAYERS), only=set(only) if only else None)
    finish("run", result, started)


@app.command()
def status(
    config: ConfigOpt = None,
    limit: Annotated[int, typer.Option(help="How many loads to show.")] = 20,
) -> None:
    """Show the latest loads from the audit log, and who holds the lake's lock."""
    proj = project(config)
    console().table("latest loads", proj.status(limit))
    who = proj.lock_holder()
    if who is not None and who.get("pid"):
        console().warn(
            f"lake locked by pid {who.get('pid')} on {who.get('host')} since {who.get('started_at')} "
            "(if that run hangs: `kill <pid>` on that host, then run again)"
        )
    elif who is not None:
        console().warn(
            f"lake leased to {who.get('owner')} on {who.get('host')} since {who.get('started_at')} "
            "(an orchestrated run; its last task releases the lease, or it expires)"
        )


@app.command()
def schema(
    out: Annotated[Path, typer.Option(help="Where to write the JSON Schema.")] = Path(
        "rcmlake.schema.json"
    ),
) -> None:
    """Write the JSON Schema of rcmlake.yaml, for editor completion and validation."""
    from rcmlake.config import json_schema

    out.write_text(json_schema(), encoding="utf-8")
    console().info(f"wrote {out}")


@app.command()
def demo(
    seed: Annotated[int, typer.Option(help="Seed of the synthetic hospitals.")] = 42,
    transactions: Annotated[int, typer.Option(help="Transactions per hospital.")] = 5_000,
    hospitals: Annotated[int, typer.Option(min=1, max=26, help="How many hospitals.")] = 2,
) -> None:
    """Synthetic hospitals → bronze → silver → gold → dashboard, all under the current folder."""
    from rcmlake.config import json_schema
    from rcmlake.demo import hospital_names, prepare
    from rcmlake.project import Project
    from rcmlake.synth import SynthSpec, synth_manifest

    started = time.monotonic()
    here = Path.cwd()
    spec = SynthSpec(seed=seed, transactions=transactions, datasources=hospital_names(hospitals))
    fresh = prepare(here, spec)
    (here / "rcmlake.schema.json").write_text(json_schema(), encoding="utf-8")
    console().info("synthetic sources " + ("written" if fresh else "already there, reused"))
    proj = Project.load(here / "rcmlake.yaml", console=console())
    result = proj.run()
    summarize("demo", result, started)
    # the synthetic set holds deliberately broken 835 files; rejecting them is the point
    broken = {
        f for r in synth_manifest(here).get("remittances", {}).values() for f in r["broken_files"]
    }
    unexpected = [
        r
        for r in result.failed
        if not (r.status == "rejected" and Path(r.source_file or "").name in broken)
    ]
    if unexpected:
        raise typer.Exit(result.exit_code)
    if result.failed:
        console().info(
            f"{len(result.failed)} deliberately broken synthetic 835 files rejected, as intended"
        )
    headline = proj.headline()
    span = headline[0].pop("months") if headline else ""
    for row in headline[1:]:
        row.pop("months")
    console().table(
        f"headline KPIs {span} (rates over the months, A/R at the as-of date)", headline
    )
    console().info(
        'next: rcmlake status | rcmlake quality | rcmlake sql "SELECT * FROM mart_kpi_monthly"'
    )
    console().info(f"dashboard: {proj.report()}")


@app.command()
def sql(
    query: Annotated[
        str | None, typer.Argument(help="SQL to run; omit for an interactive shell.")
    ] = None,
    config: ConfigOpt = None,
    format: Annotated[
        str, typer.Option("--format", "-f", help="table, csv, json or parquet.")
    ] = "table",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of the terminal.")
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="Read the lake as it was: a release number (`rcmlake history`) or a time.",
        ),
    ] = None,
    role: RoleOpt = "analyst",
) -> None:
    """Query silver and gold with DuckDB SQL; tables are views named as in the docs (fact_claim, patients …)."""
    from rcmlake.serve.output import render_table, shell

    proj = project(config)
    if query is None:
        shell(proj, console(), role)
        return
    render_table(proj.sql(query, as_of=as_of, role=role), format, output, console())


@app.command()
def history(
    table: Annotated[
        str | None,
        typer.Argument(help="A table (silver/patients); omit to list the gold releases."),
    ] = None,
    config: ConfigOpt = None,
    limit: Annotated[int, typer.Option(help="How many versions to show.")] = 20,
) -> None:
    """A table's versions with the run that wrote each, or the gold releases `sql --as-of` reads."""
    rows = project(config).history(table, limit)
    console().table(f"history of {table}" if table else "gold releases (newest first)", rows)


@app.command()
def vacuum(
    config: ConfigOpt = None,
    retain_hours: Annotated[
        int, typer.Option(help="Keep files any version of the last N hours needs.")
    ] = 168,
) -> None:
    """Compact small files, checkpoint the logs and delete files older than the retention."""
    rows = project(config).vacuum(retain_hours)
    console().table("maintained", rows)
    removed = sum(r["files_vacuumed"] for r in rows)
    console().info(
        f"{len(rows)} tables; {removed:,} files deleted; rollback and --as-of reach back "
        f"{retain_hours} hours"
    )


@app.command()
def quality(
    config: ConfigOpt = None,
    examples: Annotated[int, typer.Option(help="Example keys per rule.")] = 3,
    role: RoleOpt = "analyst",
) -> None:
    """Show quarantined rows per table, datasource and rule, with example keys."""
    found = project(config).quality(examples, role)
    console().table(
        "rows failing each rule (severity as configured for the datasource)", found["rules"]
    )
    console().table(
        "quarantine per table (a row failing several rules is one row, several hits)",
        found["tables"],
    )
    if found["unknown_members"]:
        console().table(
            "fact rows with an unknown dimension member (key -1)", found["unknown_members"]
        )
    rows = sum(r["quarantined_rows"] for r in found["tables"])
    hits = sum(r["rule_hits"] for r in found["tables"])
    console().info(f"{rows:,} quarantined rows, {hits:,} rule hits (kept in silver, never in gold)")


@app.command()
def report(
    config: ConfigOpt = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="HTML file [default: rcmlake-report.html beside the config]."
        ),
    ] = None,
    role: RoleOpt = "analyst",
) -> None:
    """Write the self-contained HTML dashboard (opens offline, no server)."""
    path = project(config).report(output, role)
    console().info(f"dashboard: {path}")


@app.command()
def export(
    config: ConfigOpt = None,
    duckdb_file: Annotated[
        Path | None,
        typer.Option("--duckdb", help="Write a DuckDB database with views over the lake."),
    ] = None,
    copy: Annotated[
        bool, typer.Option("--copy", help="With --duckdb: copy the data instead of views.")
    ] = False,
    postgres: Annotated[
        str | None,
        typer.Option(
            "--postgres", help="Publish gold into this PostgreSQL URL (`${ENV}` allowed)."
        ),
    ] = None,
    schema_name: Annotated[
        str, typer.Option("--schema", help="PostgreSQL schema for gold.")
    ] = "rcmlake_gold",
    role: RoleOpt = "analyst",
) -> None:
    """Export the lake for BI tools: a DuckDB file, or gold tables in PostgreSQL."""
    if not duckdb_file and not postgres:
        raise typer.BadParameter("give --duckdb FILE and/or --postgres URL")
    proj = project(config)
    if duckdb_file:
        names = proj.export_duckdb(duckdb_file, copy=copy, role=role)
        console().info(f"{duckdb_file}: {len(names)} tables ({'copied' if copy else 'views'})")
    if postgres:
        counts = proj.export_postgres(postgres, schema=schema_name, role=role)
        console().table(
            f"published to PostgreSQL schema {schema_name}",
            [{"table": k, "rows": v} for k, v in counts.items()],
        )


@app.command()
def rollback(
    run_id: Annotated[
        str | None, typer.Argument(help="Undo this run and every later one (see `rcmlake status`).")
    ] = None,
    config: ConfigOpt = None,
    run: Annotated[str | None, typer.Option("--run", help="The same as RUN_ID.")] = None,
    table: Annotated[
        str | None, typer.Option(help="Restore one table instead, e.g. silver/patients.")
    ] = None,
    version: Annotated[int | None, typer.Option(help="With --table: the Delta version.")] = None,
) -> None:
    """Roll the lake back before a run (or one table to a version); the next run reloads."""
    records = project(config).rollback(run_id or run, table=table, version=version)
    console().table(
        "rolled back",
        [
            {
                "table": f"{r.layer}/{r.datasource}/{r.table}".replace("/*/", "/"),
                "from": r.watermark_from,
                "to": r.watermark_to,
                "version": r.delta_version,
            }
            for r in records
        ],
    )
    console().info(f"{len(records)} tables moved; run `rcmlake run` to load again")


@app.command("airflow-dag")
def airflow_dag(
    config: ConfigOpt = None,
    out: Annotated[
        Path | None, typer.Option(help="DAG file to write [default: ./<dag id>.py].")
    ] = None,
    dag_id: Annotated[str | None, typer.Option(help="[default: the config's name]")] = None,
    schedule: Annotated[
        str, typer.Option(help="Cron or preset (@daily, @hourly), or `none` for manual runs.")
    ] = "@daily",
    pool: Annotated[str, typer.Option(help="Airflow pool bounding parallel tasks.")] = "rcmlake",
) -> None:
    """Write an Airflow DAG file running this config: a task per load and entity, then gold."""
    from rcmlake.airflow import dag_file, plan, task_name
    from rcmlake.config import load_config
    from rcmlake.config.loader import DEFAULT_FILE

    path = config or Path(DEFAULT_FILE)
    cfg = load_config(path)
    name = dag_id or task_name(cfg.name)
    steps = plan(cfg)
    target = out or Path(f"{name}.py")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(
        dag_file(
            path,
            dag_id=name,
            schedule=None if schedule == "none" else schedule,
            pool=pool,
            slots=cfg.run.workers,
        ),
        encoding="utf-8",
    )
    layers = [s.layer for s in steps]
    console().info(
        f"wrote {target}: DAG {name}, {len(steps)} tasks ({layers.count('bronze')} bronze, "
        f"{layers.count('silver')} silver, gold, report); create the pool once: "
        f'airflow pools set {pool} {cfg.run.workers} "rcmlake loads"'
    )
