"""Rendering query results: terminal table, CSV, JSON, Parquet; and the interactive SQL shell."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from rcmlake.console import Console
from rcmlake.errors import ConfigError, RcmlakeError

FORMATS = ("table", "csv", "json", "parquet")


def render_table(table: pa.Table, fmt: str, output: Path | None, console: Console) -> None:
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    if fmt == "parquet":
        if output is None:
            raise ConfigError("--format parquet needs --output FILE")
        pq.write_table(table, output)
        return
    if fmt == "table":
        if output is not None:
            raise ConfigError(
                "--format table prints to the terminal; use csv, json or parquet with --output"
            )
        console.table(f"{table.num_rows} rows", table.slice(0, 200).to_pylist())
        return
    if fmt == "csv":
        buf = io.BytesIO()
        pacsv.write_csv(table, buf)
        text = buf.getvalue().decode()
    else:
        text = json.dumps(table.to_pylist(), default=str, indent=1)
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")


def shell(project: Any, console: Console, role: str = "analyst") -> None:
    """A small SQL prompt: statements end with ';', `.tables` lists views, `.quit` leaves."""
    console.info(
        "rcmlake SQL shell (DuckDB). End statements with ';'. .tables lists tables, .quit exits."
    )
    buffer: list[str] = []
    while True:
        try:
            line = input("rcmlake> " if not buffer else "     ...> ")
        except EOFError:
            return
        if not buffer and line.strip() in (".quit", ".exit"):
            return
        if not buffer and line.strip() == ".tables":
            console.info(", ".join(project.tables()))
            continue
        buffer.append(line)
        if line.rstrip().endswith(";"):
            query, buffer = "\n".join(buffer).rstrip().rstrip(";"), []
            try:
                render_table(project.sql(query, role=role), "table", None, console)
            except RcmlakeError as exc:
                console.warn(str(exc))
