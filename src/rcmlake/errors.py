"""The one exception hierarchy of rcmlake.

::

    RcmlakeError                      exit 3 unless a subclass says otherwise
    ├── ConfigError                   exit 2: bad rcmlake.yaml / load_config.csv / env var
    ├── SourceError                   exit 1: a source could not be read
    │   ├── SourceUnavailable         transient: retried with backoff (unreachable, refused)
    │   ├── SourceAuthError           authentication failed: not retried
    │   └── SourceNotFound            unknown host or database: not retried
    ├── FileRejected                  exit 1: a landing file cannot be ingested (moved aside)
    ├── SchemaDriftError              exit 1: a source's columns differ from what is declared
    ├── StorageError                  exit 1: the lake could not be read or written
    │   ├── CommitConflict            transient: retried with backoff
    │   └── LakeLocked                exit 1: another run holds the lake
    ├── EngineError                   exit 1: a transform failed in the SQL engine
    ├── QualityError                  exit 1: error-severity quality failures where the run must stop
    ├── StepFailed                    exit 1: a task of an orchestrated run failed (transient if each load was)
    └── MissingDependencyError        exit 2: an optional extra is not installed

Third-party exceptions are translated at one boundary each (connectorx and
SQLAlchemy in ``sources``, deltalake in ``storage``, duckdb in ``engines``,
httpx in ``sources.codesets.http``). Retries are decided by the
``transient`` class attribute, never by matching message text. Messages are
one line and never carry PHI values: they name datasource, table, column and
row key only.
"""

from __future__ import annotations

import re


class RcmlakeError(Exception):
    """Base of every error rcmlake raises on purpose."""

    exit_code = 3
    transient = False


class ConfigError(RcmlakeError):
    """The configuration is invalid; raised before any work starts."""

    exit_code = 2

    def __init__(self, message: str, *, file: str | None = None, field: str | None = None):
        where = ": ".join(p for p in (file, field) if p)
        super().__init__(f"{where}: {message}" if where else message)
        self.file = file
        self.field = field


class SourceError(RcmlakeError):
    """A source database, file or API returned something unusable."""

    exit_code = 1


class SourceUnavailable(SourceError):
    """A source could not be reached; worth retrying."""

    transient = True


class SourceAuthError(SourceError):
    """The source refused the credentials; retrying cannot help."""


class SourceNotFound(SourceError):
    """The source's host or database does not exist; retrying cannot help."""


class FileRejected(SourceError):
    """A landing file cannot be ingested; it is moved to ``rejected/`` with this reason."""


class SchemaDriftError(RcmlakeError):
    """A source's columns no longer match what the config and the lake expect."""

    exit_code = 1


class StorageError(RcmlakeError):
    """The lake could not be read or written."""

    exit_code = 1


class CommitConflict(StorageError):
    """A concurrent writer committed first; the write can be retried."""

    transient = True


class LakeLocked(StorageError):
    """Another rcmlake run holds the lake's lock."""


class EngineError(RcmlakeError):
    """A transform failed inside the SQL engine."""

    exit_code = 1


class EngineUnavailable(EngineError):
    """The engine's server (Spark Connect) cannot be reached; retried like a source outage."""

    transient = True


class QualityError(RcmlakeError):
    """Data failed checks in a way that must stop the run."""

    exit_code = 1


class StepFailed(RcmlakeError):
    """A task of an orchestrated run (``rcmlake.airflow``) had failed loads; transient, so
    retried, when every one of them was."""

    exit_code = 1


class MissingDependencyError(RcmlakeError):
    """An optional extra is needed, e.g. ``pip install rcmlake[spark]``."""

    exit_code = 2


_QUOTED = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"")
_CSV_ROW = re.compile(r"(Expected \d+ columns, got \d+):.*")


def scrub(message: str) -> str:
    """``message`` without the data values third-party libraries quote in their errors.

    DuckDB (``Could not convert string '1985-13-45'``, ``invalid date field format:
    "…"``) and Arrow's CSV reader (``got 3: <the row>``) put the offending value in the
    message; in rcmlake that value can be a date of birth or a note. Quoted text of
    either kind goes (DuckDB quotes identifiers and values alike). Each translation
    boundary (duckdb, deltalake, Arrow CSV, the CLI's internal-error line) passes the
    library's text through here; rcmlake's own messages name table, column, rule and row
    key, never a value.
    """
    return _CSV_ROW.sub(r"\1", _QUOTED.sub("…", message))


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is worth retrying (the only place retries look)."""
    return isinstance(exc, RcmlakeError) and exc.transient
