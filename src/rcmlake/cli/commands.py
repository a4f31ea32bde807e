"""The commands; each is options → Project → one method → render."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from rcmlake.cli.app import ConfigOpt, app, console, finish, project


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
) -> None:
    """Generate two synthetic hospitals: EMR databases, monthly claims files and a CPT file."""
    from rcmlake.synth import SynthSpec, synthesize

    started = time.monotonic()
    spec = SynthSpec(seed=seed, transactions=transactions, months=months, defect_rate=defect_rate)
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
        list[str] | None, typer.Option(help="Only these datasources or feeds (bronze).")
    ] = None,
) -> None:
    """Run the pipeline: ingest into bronze, build silver, build gold."""
    from rcmlake.project import LAYERS

    started = time.monotonic()
    result = project(config).run(layer or list(LAYERS), only=set(only) if only else None)
    finish("run", result, started)


@app.command()
def status(
    config: ConfigOpt = None,
    limit: Annotated[int, typer.Option(help="How many loads to show.")] = 20,
) -> None:
    """Show the latest loads from the audit log."""
    console().table("latest loads", project(config).status(limit))


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
) -> None:
    """Synthetic hospitals → bronze → silver → gold → dashboard, all under the current folder."""
    from rcmlake.config import json_schema
    from rcmlake.demo import prepare
    from rcmlake.project import Project
    from rcmlake.synth import SynthSpec

    started = time.monotonic()
    here = Path.cwd()
    fresh = prepare(here, SynthSpec(seed=seed, transactions=transactions))
    (here / "rcmlake.schema.json").write_text(json_schema(), encoding="utf-8")
    console().info("synthetic sources " + ("written" if fresh else "already there, reused"))
    proj = Project.load(here / "rcmlake.yaml", console=console())
    result = proj.run()
    finish("demo", result, started)
