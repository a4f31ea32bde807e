"""Pydantic models of ``rcmlake.yaml``.

Unknown keys are forbidden everywhere, so a typo fails before any work
starts. Sources are a union discriminated on ``type``. Connection URLs may
hold ``${ENV_VAR}`` references; they are resolved only when a connection is
opened (see :mod:`rcmlake.config.secrets`), so a resolved password never
lives in a model that might be printed.
"""

from __future__ import annotations

import os
import re
from datetime import date
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rcmlake.config.secrets import redact, resolve_env
from rcmlake.storage.objects import is_uri

IDENT = r"^[A-Za-z_][A-Za-z0-9_]*$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TableConfig(Strict):
    """One source table to land in bronze.

    Example::

        - name: patients
          load_type: incremental
          watermark: ModifiedDate
          primary_key: [PatientID]
    """

    name: str = Field(description="Table name in the source, e.g. `patients` or `dbo.patients`.")
    entity: str | None = Field(
        None, pattern=IDENT, description="CDM entity it feeds; defaults to the bare table name."
    )
    load_type: Literal["full", "incremental"] = "full"
    watermark: str | None = Field(None, description="Column compared for incremental loads.")
    primary_key: list[str] = Field(default_factory=list)
    active: bool = True
    on_empty: Literal["fail", "accept"] = Field(
        "fail",
        description="A full table that comes back empty while bronze holds rows: `fail` "
        "(default; an empty EMR table is usually an outage, nothing changes) or `accept` "
        "(empty it in bronze and silver).",
    )
    target: str | None = Field(
        None, pattern=IDENT, description="Bronze folder name; defaults to the entity."
    )
    partitions: int = Field(
        1,
        ge=1,
        le=32,
        description="Read the table as this many queries at once, split by a hash of the "
        "primary key (MySQL, PostgreSQL, SQL Server; one stream for SQLite). For a large "
        "table on a server with cores to spare.",
    )

    @field_validator("load_type", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _watermark_for_incremental(self) -> TableConfig:
        if self.load_type == "incremental" and not self.watermark:
            raise ValueError("an incremental table needs a `watermark` column")
        return self

    @model_validator(mode="after")
    def _key_for_partitions(self) -> TableConfig:
        if self.partitions > 1 and not self.primary_key:
            raise ValueError(
                f"table {self.name!r}: `partitions` splits the read by the primary key; "
                "give `primary_key`"
            )
        return self

    @model_validator(mode="after")
    def _safe_names(self) -> TableConfig:
        """Source names may hold any printable character (they are quoted, never spliced),
        but not control characters or empty parts; what names the lake folder must be an
        identifier, so a table called ``../x`` cannot write outside ``bronze/``."""
        parts = self.name.split(".")
        columns = [self.watermark or "x", *self.primary_key]
        for name in (*parts, *columns):
            if not name or not name.isprintable():
                raise ValueError(f"{self.name!r}: names must be non-empty and printable")
        if len(parts) > 3:
            raise ValueError(f"{self.name!r}: at most database.schema.table")
        if not self.target and not re.match(IDENT, self.entity_name):
            raise ValueError(
                f"table {self.name!r} does not give a lake folder name; set `entity` or "
                "`target` (letters, digits, underscores)"
            )
        return self

    @property
    def bare_name(self) -> str:
        return self.name.split(".")[-1]

    @property
    def entity_name(self) -> str:
        return self.entity or self.bare_name.lower()

    @property
    def target_name(self) -> str:
        return self.target or self.entity_name


class _DatabaseSource(Strict):
    url: str = Field(
        description="Connection URL; `${ENV_VAR}` references are resolved at run time."
    )
    tables: list[TableConfig] = Field(default_factory=list)
    aliases: list[str] = Field(
        default_factory=list,
        description="Other spellings of this datasource in legacy files (e.g. `hos-a`).",
    )
    timezone: str | None = Field(
        None,
        description="IANA zone of the source's naive timestamps (e.g. `America/Chicago`); "
        "silver stores them in UTC. Default: they are UTC already.",
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r}; use an IANA name such as America/Chicago"
            ) from None
        return value

    def resolved_url(self) -> str:
        """The URL with environment references substituted (never log it)."""
        return resolve_env(self.url, field="url", url=True)

    def display_url(self) -> str:
        return redact(self.url)


class SqliteSource(_DatabaseSource):
    type: Literal["sqlite"] = "sqlite"

    @model_validator(mode="after")
    def _one_stream(self) -> SqliteSource:
        split = [t.name for t in self.tables if t.partitions > 1]
        if split:
            raise ValueError(
                f"table {split[0]!r}: SQLite is read in one stream (a file has no server to "
                "share the work); remove `partitions`"
            )
        return self


class MysqlSource(_DatabaseSource):
    type: Literal["mysql"] = "mysql"


class PostgresSource(_DatabaseSource):
    type: Literal["postgres"] = "postgres"


class MssqlSource(_DatabaseSource):
    type: Literal["mssql"] = "mssql"


SourceConfig = Annotated[
    SqliteSource | MysqlSource | PostgresSource | MssqlSource, Field(discriminator="type")
]


class FileFeedConfig(Strict):
    """CSV files dropped into a landing folder (claims per hospital, CPT codes).

    The datasource of a file is known only from its name, so ``patterns``
    maps each datasource to a glob.
    """

    folder: str = Field(
        description="Where the files arrive: a folder under `landing` (relative to the config "
        "file; relative to the landing root when `landing` is an object-store URI), or a URI "
        "under an object-store `landing`."
    )
    patterns: dict[str, str] = Field(description="datasource -> file-name glob")
    layout: Literal["claims", "cpt_codes", "x835"] = Field(
        description="Which header and types the files carry (`x835`: X12 835 remittances)."
    )
    target: str | None = Field(None, pattern=IDENT, description="Bronze table name.")
    max_line_bytes: int = Field(
        1 << 20,
        ge=1024,
        le=1 << 30,
        description="A file with a longer line is rejected with the reason (default 1 MiB).",
    )

    @field_validator("patterns")
    @classmethod
    def _names_only(cls, value: dict[str, str]) -> dict[str, str]:
        """A pattern matches file names in the feed's folder: never a path that climbs out
        of it (``../``) or starts elsewhere (``/``), which would load and move other files."""
        for ds, pattern in value.items():
            parts = Path(pattern).parts
            if Path(pattern).is_absolute() or ".." in parts or "\\" in pattern:
                raise ValueError(
                    f"pattern {pattern!r} of {ds} must name files inside the feed's folder "
                    "(a glob such as 'hospital1_*.csv'; set `folder` for another place)"
                )
        return value


class HttpCodesetConfig(Strict):
    mode: Literal["api", "packaged", "off"] = "packaged"
    url: str | None = None
    requests_per_second: float = Field(5.0, gt=0)
    timeout_seconds: float = Field(10.0, gt=0)
    page_size: int = Field(200, ge=1, le=500)


class CodesetsConfig(Strict):
    icd: HttpCodesetConfig = HttpCodesetConfig(
        mode="packaged", url="https://clinicaltables.nlm.nih.gov/api/icd10cm/v3/search"
    )
    npi: HttpCodesetConfig = HttpCodesetConfig(
        mode="off", url="https://npiregistry.cms.hhs.gov/api/"
    )
    carc_file: Path | None = Field(
        None,
        description="CSV (code, description, category, start_date, stop_date) replacing the "
        "packaged CARC slice: the X12 list, refreshed when it changes.",
    )
    rarc_file: Path | None = Field(None, description="The same for RARC remark codes.")


class RuleConfig(Strict):
    """A quality rule: a SQL predicate that must hold for every row of a silver entity.

    NULL counts as holding, so a rule about a nullable column need not repeat
    ``x IS NULL OR …``; required columns get their own ``… IS NOT NULL`` rule.
    """

    name: str = Field(pattern=IDENT)
    table: str = Field(pattern=IDENT, description="Silver entity the rule applies to.")
    predicate: str
    severity: Literal["error", "warn"] = "error"


class SeverityConfig(Strict):
    """A rule's severity changed without re-writing its predicate, for some datasources or all.

    Example (hospital B's transactions name providers its provider table does not have)::

        - {rule: provider_exists, severity: warn, datasources: [hospital_b]}
    """

    rule: str = Field(pattern=IDENT)
    severity: Literal["error", "warn"]
    datasources: list[str] = Field(
        default_factory=list, description="Datasources it applies to; empty: all."
    )


class SilverConfig(Strict):
    mappings: dict[str, dict[str, dict[str, str]]] = Field(
        default_factory=dict,
        description="datasource -> entity -> CDM column -> source column (or SQL expression), "
        "overriding the default mapping of transforms/silver/silver.yml.",
    )
    tracked: dict[str, list[str]] = Field(
        default_factory=dict, description="entity -> SCD2 tracked columns, overriding the defaults."
    )
    rules: list[RuleConfig] = Field(
        default_factory=list, description="Quality rules added to the defaults."
    )
    disable_rules: list[str] = Field(
        default_factory=list, description="Default rules to switch off, by name."
    )
    severity: list[SeverityConfig] = Field(
        default_factory=list,
        description="Demote a rule to `warn` or promote it to `error`, per datasource or for all.",
    )


class GoldConfig(Strict):
    as_of: date | None = Field(
        None, description="A/R as-of date; default: the last day the data reaches (docs/KPIS.md)."
    )
    aging_basis: Literal["service_date", "claim_date"] = Field(
        "service_date", description="Age of A/R measured from the service date or the claim date."
    )
    fiscal_year_start_month: int = Field(1, ge=1, le=12)
    remittance_wait_days: int = Field(
        45, ge=1, description="A claim with no 835 remittance after this many days is an exception."
    )
    underpayment_threshold: float = Field(
        0.10,
        ge=0,
        lt=1,
        description="A line paid this share below the payer's usual payment for the CPT is underpaid.",
    )
    incremental: bool = Field(
        True,
        description="Rebuild only the gold tables (and, for facts, the service months) whose "
        "inputs changed since the last release; `false` rebuilds every table whole.",
    )


def default_workers() -> int:
    """Tables ingested in parallel by default: the cores, at least 2, at most 8.

    Extraction, CSV typing and 835 parsing are CPU work here, so loads beyond the cores only
    contend: bronze at scale 10 on 2 cores took 193 s (293 s of CPU) with 5 workers, 177 s
    (282 s) with 3 and 165 s (270 s) with 2. Sources on slow remote servers, where a load
    mostly waits, may want more."""
    return min(8, max(2, os.cpu_count() or 2))


class RunConfig(Strict):
    workers: int = Field(
        default_factory=default_workers,
        ge=1,
        le=64,
        description="Tables ingested in parallel (default: the cores, at least 2, at most 8).",
    )
    retries: int = Field(3, ge=1, le=20, description="Attempts on transient errors.")
    backoff_seconds: float = Field(1.0, ge=0, description="First retry delay; doubles each time.")
    batch_rows: int = Field(250_000, ge=1_000, description="Rows per Arrow batch when extracting.")
    memory_limit: str | None = Field(
        None,
        pattern=r"^[0-9]+(\.[0-9]+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$",
        description="Engine memory limit, e.g. `4GB`; past it the engine spills to disk "
        "(default: DuckDB's, 80% of RAM).",
    )
    threads: int | None = Field(
        None, ge=1, le=256, description="Engine threads (default: all cores)."
    )
    engine: Literal["duckdb", "spark"] = Field(
        "duckdb",
        description="Where silver and gold run: `duckdb` in this process, or `spark` on a "
        "Spark Connect server (bronze extraction stays in this process).",
    )
    spark_remote: str | None = Field(
        None,
        pattern=r"^sc://",
        description="Spark Connect URL, `sc://host:port` (default: `$RCMLAKE_SPARK_REMOTE`, "
        "then `$SPARK_REMOTE`); a token belongs in those variables, not in this file.",
    )
    lease_seconds: float = Field(
        300.0,
        ge=1,
        description="The lake lease's time to live: a killed run's lease is taken over after "
        "it (at once on the same host); a holder renews it every third of it.",
    )


class ProjectConfig(Strict):
    """The whole of ``rcmlake.yaml``."""

    name: str = "rcmlake"
    lake: str = Field(description="Lake root: a folder or an object-store URI (s3://…).")
    sources: dict[str, SourceConfig] = Field(default_factory=dict)
    tables_csv: Path | None = Field(
        None, description="A reference-design `load_config.csv` providing the table list."
    )
    landing: str = Field(
        "landing",
        description="Landing root, a folder or an object-store URI (s3://…, gs://…, az://…); "
        "holds archive/ and rejected/.",
    )
    files: dict[str, FileFeedConfig] = Field(default_factory=dict)
    codesets: CodesetsConfig = CodesetsConfig()
    silver: SilverConfig = SilverConfig()
    gold: GoldConfig = GoldConfig()
    run: RunConfig = RunConfig()
    base_dir: Path = Field(Path("."), exclude=True, description="Folder relative paths start from.")
    notices: tuple[str, ...] = Field(
        (), exclude=True, description="What loading the config decided (shown when a run starts)."
    )

    @field_validator("sources")
    @classmethod
    def _names(cls, value: dict[str, SourceConfig]) -> dict[str, SourceConfig]:

        for name in value:
            if not re.match(IDENT, name):
                raise ValueError(f"datasource name {name!r} must be letters, digits, underscores")
        return value

    def path(self, p: Path | str) -> Path:
        """Resolve a config-relative path."""
        p = Path(p)
        return p if p.is_absolute() else (self.base_dir / p).resolve()

    @property
    def lake_uri(self) -> str:
        if "://" in self.lake:
            return self.lake.rstrip("/")
        return str(self.path(self.lake))

    @property
    def landing_root(self) -> str:
        """The landing root: an object-store URI, or an absolute local path."""
        if is_uri(self.landing):
            return self.landing.rstrip("/")
        return str(self.path(self.landing.removeprefix("file://")))

    def feed_folder(self, feed: FileFeedConfig) -> str:
        """Where ``feed``'s files arrive, relative to the landing root (``claims``)."""
        root = self.landing_root
        if is_uri(root):
            if not is_uri(feed.folder):
                return feed.folder.strip("/")
            if not feed.folder.rstrip("/").startswith(root + "/"):
                raise ValueError(f"{feed.folder} is outside the landing root {root}")
            return feed.folder.rstrip("/")[len(root) + 1 :]
        if is_uri(feed.folder):
            raise ValueError(f"{feed.folder} is an object-store URI, but landing is {root}")
        folder = self.path(feed.folder)
        if not folder.is_relative_to(root):
            raise ValueError(
                f"{feed.folder} resolves to {folder}, outside the landing folder {root}"
            )
        return folder.relative_to(root).as_posix().removeprefix(".")

    @model_validator(mode="after")
    def _feeds_inside_landing(self) -> ProjectConfig:
        """Feed folders live under the landing root, where archive/ and rejected/ are."""
        for name, feed in self.files.items():
            try:
                self.feed_folder(feed)
            except ValueError as exc:
                raise ValueError(f"files.{name}.folder: {exc}") from None
        return self
