"""Thin typer commands over :class:`rcmlake.project.Project`.

Errors print one line and exit with the error's code: 0 success, 1 data or
quality failure, 2 config or usage error, 3 internal error (``--debug``
shows the traceback).
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console as RichConsole

from rcmlake.console import TerminalConsole
from rcmlake.errors import RcmlakeError, scrub

app = typer.Typer(
    name="rcmlake",
    help="A lakehouse for healthcare revenue cycle management: EMR databases, claims files and code "
    "sets into bronze → silver → gold Delta tables, KPIs and a dashboard.\n\n"
    "Start with `rcmlake demo`, then `rcmlake status`, `rcmlake sql` and `rcmlake report`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = RichConsole(stderr=True)
state = {"debug": False, "config": None}

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="Config file [default: ./rcmlake.yaml].")
]
RoleOpt = Annotated[
    str,
    typer.Option(
        "--role",
        help="analyst (direct identifiers masked, no host files) or privileged (every value).",
    ),
]


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False,
) -> None:
    state["debug"] = debug
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING)


def console() -> TerminalConsole:
    return TerminalConsole()


def project(  # type: ignore[no-untyped-def]
    config: Path | None, engine: str | None = None, spark_remote: str | None = None
):
    """The project of ``config``; ``engine`` and ``spark_remote`` override its ``run``."""
    from rcmlake.config import load_config
    from rcmlake.project import Project

    cfg = load_config(config)
    overrides = {"engine": engine, "spark_remote": spark_remote}
    if any(overrides.values()):
        run = cfg.run.model_validate(
            {**cfg.run.model_dump(), **{k: v for k, v in overrides.items() if v}}
        )
        cfg = cfg.model_copy(update={"run": run})
    return Project(cfg, console=console())


def finish(title: str, result, started: float) -> None:  # type: ignore[no-untyped-def]
    """Print the run's summary table and exit with its code."""
    summarize(title, result, started)
    if result.exit_code:
        raise typer.Exit(result.exit_code)


def summarize(title: str, result, started: float) -> None:  # type: ignore[no-untyped-def]
    out = console()
    out.table(title, result.summary())
    failed = len(result.failed)
    for r in result.failed:
        out.warn(
            f"{r.layer} {r.datasource}.{r.table}{' ' + r.source_file if r.source_file else ''}: {r.error}"
        )
    colour = "red" if failed else "green"
    out.info(
        f"[{colour}]{len(result.records)} loads, {failed} failed[/] in {time.monotonic() - started:.1f}s "
        f"(run {result.run_id})"
    )


from rcmlake.cli import commands  # noqa: E402,F401  (registers the commands)


def main() -> None:
    try:
        _main()
    finally:
        # Arrow dataset scanners keep native threads; collected during interpreter teardown
        # they can abort the process ("terminate called without an active exception",
        # apache/arrow#34314) after the work is done. Collect them while Arrow is alive.
        gc.collect()


def _main() -> None:
    os.umask(0o077)  # the lake, reports and exports hold PHI: private to the owner
    try:
        app()
    except RcmlakeError as exc:
        if state["debug"]:
            raise
        err.print(f"[red]Error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("[red]Interrupted[/]")
        sys.exit(130)
    except Exception as exc:
        if state["debug"]:
            raise
        err.print(
            f"[red]Internal error:[/] {type(exc).__name__}: {scrub(str(exc))} (rerun with --debug for the traceback)"
        )
        sys.exit(3)
