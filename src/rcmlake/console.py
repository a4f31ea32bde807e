"""Where library code reports progress and results; it never prints.

``TerminalConsole`` renders rich progress bars and summary tables;
``QuietConsole`` records events for tests, schedulers and Airflow tasks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from rich.console import Console as RichConsole
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

log = logging.getLogger("rcmlake")


class Console(Protocol):
    """What the library may tell the user."""

    @contextmanager
    def progress(self, title: str, total: int) -> Iterator[Any]: ...

    def info(self, message: str) -> None: ...

    def warn(self, message: str) -> None: ...

    def table(self, title: str, rows: Sequence[dict[str, Any]]) -> None: ...


class _Step:
    def __init__(self, progress: Progress | None, task: Any):
        self._progress, self._task = progress, task

    def advance(self, label: str = "") -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=1, description=label or None)


class QuietConsole:
    """Records what would have been shown; logs it at INFO for schedulers."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    @contextmanager
    def progress(self, title: str, total: int) -> Iterator[_Step]:
        self.events.append(("progress", title))
        yield _Step(None, None)

    def info(self, message: str) -> None:
        self.events.append(("info", message))
        log.info(message)

    def warn(self, message: str) -> None:
        self.events.append(("warn", message))
        log.warning(message)

    def table(self, title: str, rows: Sequence[dict[str, Any]]) -> None:
        self.events.append(("table", (title, list(rows))))


class TerminalConsole:
    """Rich output for people at a terminal."""

    def __init__(self, rich: RichConsole | None = None):
        self.rich = rich or RichConsole()

    @contextmanager
    def progress(self, title: str, total: int) -> Iterator[_Step]:
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=self.rich, transient=True) as bar:
            yield _Step(bar, bar.add_task(title, total=total))

    def info(self, message: str) -> None:
        self.rich.print(message)

    def warn(self, message: str) -> None:
        self.rich.print(f"[yellow]warning:[/] {message}")

    def table(self, title: str, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            self.rich.print(f"[bold]{title}[/]: nothing to show")
            return
        out = Table(title=title, title_justify="left")
        for col in rows[0]:
            out.add_column(
                col, justify="right" if isinstance(rows[0][col], int | float) else "left"
            )
        for row in rows:
            out.add_row(*(_cell(v) for v in row.values()))
        self.rich.print(out)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    text = str(value)
    return {"failed": "[red]failed[/]", "success": "[green]success[/]"}.get(text, text)
