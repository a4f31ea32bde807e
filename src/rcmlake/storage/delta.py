"""The lake: Delta tables under one root, local or on an object store.

Every write is one Delta commit, so it is atomic: readers see the table
before or after, never half. rcmlake stamps each commit with
``rcmlake.*`` custom metadata (run, batch, watermark, content hash), which
makes the Delta log itself the record of what was committed: the audit log
can be rebuilt from it after a crash. deltalake exceptions are translated
here, and nowhere else.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.dataset as ds
from deltalake import DeltaTable, Schema, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError
from deltalake.table import TableMerger
from deltalake.transaction import (
    AddAction,
    CommitProperties,
    RemoveAction,
    create_table_with_add_actions,
)

from rcmlake.errors import CommitConflict, StorageError, scrub
from rcmlake.storage.objects import is_uri

META_PREFIX = "rcmlake."
# a checkpoint every 10 commits: opening a table replays at most 10 JSON commits, which on an
# object store is 10 requests, not one per commit since the table was created (delta-rs writes
# the checkpoint after the commit that reaches the interval)
CHECKPOINT_EVERY = {"delta.checkpointInterval": "10"}
# commit metadata that is table state (read from the newest commit), not a load's record
STATE_KEYS = ("watermark_to", "content_hash", "rules", "fingerprint", "run_id", "as_of_date")
# metadata of a commit that carries, for the commit just before it (whose writer could not
# record rcmlake's metadata: Sail's MERGE), what that commit did: its version
VOUCHES_FOR = "vouches_for"


@dataclass(frozen=True)
class DataFile:
    """A Parquet file an engine wrote into a table's folder, for ``Lake.commit_files``."""

    path: str  # relative to the table's root
    size: int
    partition_values: dict[str, str | None]
    stats: str  # Delta statistics JSON (numRecords, nullCount; minValues, maxValues optional)


@dataclass(frozen=True)
class LoggedFile:
    """A data file of a table version: where it is (``local``) and how the log names it."""

    local: str
    path: str
    size: int
    partition_values: dict[str, str | None]


class Lake:
    """Delta tables addressed by their path under the lake root, e.g. ``bronze/hospital_a/patients``.

    Example::

        lake = Lake("/data/lake")
        lake.write("silver/departments", table, mode="overwrite", metadata={"batch_id": "b1"})
        lake.dataset("silver/departments").to_table()
    """

    def __init__(self, root: str, storage_options: dict[str, str] | None = None):
        self.root = root.rstrip("/")
        self.storage_options = storage_options or _env_storage_options(root)
        # called before every commit: a run that lost the lake lease stops (storage.lease)
        self.fence: Callable[[], None] = lambda: None
        # open tables, brought up to date on each use: replaying only the commits since the
        # last use is one request on an object store, reopening is one per log file
        self._open: dict[str, DeltaTable] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    @property
    def is_local(self) -> bool:
        return not is_uri(self.root)

    def uri(self, path: str) -> str:
        return f"{self.root}/{path.strip('/')}"

    def table(self, path: str, version: int | None = None) -> DeltaTable | None:
        """The Delta table at ``path`` (its newest version unless ``version``), or None when
        none was written yet."""
        try:
            if version is not None:
                return DeltaTable(
                    self.uri(path), version=version, storage_options=self.storage_options
                )
            with self._lock(path):  # parallel loads of different tables open them in parallel
                dt = self._open.get(path)
                if dt is None:
                    dt = self._open[path] = DeltaTable(
                        self.uri(path), storage_options=self.storage_options
                    )
                else:
                    dt.update_incremental()
                return dt
        except TableNotFoundError:
            return None
        except DeltaError as exc:
            raise StorageError(f"cannot open {path}: {exc}") from None

    def _lock(self, path: str) -> threading.Lock:
        """The lock of one open table: its state is updated (brought up to date, or moved by
        a commit: write, merge, delete, restore, maintenance) by one thread at a time."""
        with self._locks_lock:
            return self._locks.setdefault(path, threading.Lock())

    def exists(self, path: str) -> bool:
        return self.table(path) is not None

    def holds_files(self, path: str) -> bool:
        """Whether the table's newest version has data files: not when it was never written,
        nor when a rollback emptied it (undoing the run that created it), so that the next
        write into it creates its rows as a first write does."""
        dt = self.table(path)
        return dt is not None and bool(dt.get_add_actions().num_rows)

    def partition_values(self, path: str, column: str) -> set[str | None]:
        """The values of partition ``column`` the table holds files for, from its log (no
        data read); empty for a table not written yet."""
        dt = self.table(path)
        return {p.get(column) for p in dt.partitions()} if dt is not None else set()

    def dataset(self, path: str, version: int | None = None) -> ds.Dataset | None:
        """A pyarrow dataset over the table's current (or a given) version, for DuckDB scans."""
        dt = self.table(path, version)
        return dt.to_pyarrow_dataset() if dt is not None else None

    def scan(
        self, path: str, version: int | None = None
    ) -> tuple[ds.Dataset, list[str] | None, list[dict[str, Any]] | None] | None:
        """The table (its newest version unless ``version``) opened once, for an engine to scan:
        its pyarrow dataset, and its data files for the engine's own Parquet reader with, for
        a partitioned table, each file's partition values (from the log: a file holds no
        partition column). Files are None where they alone do not say what the table holds
        (not a local folder, deletion vectors or column mapping). None: no table yet."""
        dt = self.table(path, version)
        if dt is None:
            return None
        data = dt.to_pyarrow_dataset()
        if not self.files_are_the_rows(dt):
            return data, None, None
        files = list(dt.file_uris())
        columns = dt.metadata().partition_columns
        if not columns:
            return data, files, None
        adds = pa.table(dt.get_add_actions(flatten=True))
        paths = [unquote(str(p)) for p in adds["path"].to_pylist()]
        if len(paths) != len(files) or any(
            not f.endswith(p) for f, p in zip(files, paths, strict=True)
        ):
            return data, None, None  # the log and the file list disagree in order: the dataset
        values = adds.select([f"partition.{c}" for c in columns]).rename_columns(columns)
        return data, files, values.to_pylist()

    def read(self, path: str, columns: list[str] | None = None) -> pa.Table | None:
        data = self.dataset(path)
        return data.to_table(columns=columns) if data is not None else None

    def write(
        self,
        path: str,
        data: pa.Table | pa.RecordBatchReader,
        *,
        mode: str = "append",
        metadata: dict[str, Any] | None = None,
        partition_by: list[str] | None = None,
        description: str | None = None,
        configuration: dict[str, str | None] | None = None,
        schema_mode: str | None = None,
        predicate: str | None = None,
    ) -> int:
        """Write ``data`` as one commit; returns the new table version."""
        self.fence()
        options: dict[str, Any] = {
            "mode": mode,
            "partition_by": partition_by,
            "description": description,
            "configuration": {**CHECKPOINT_EVERY, **(configuration or {})},
            "schema_mode": schema_mode,
            "storage_options": self.storage_options,
            "commit_properties": _props(metadata),
        }
        if predicate:
            options["predicate"] = predicate
        # into the open table where there is one: delta-rs then commits on the state it holds
        # (rebased if another writer committed since) instead of opening the table again,
        # which on an object store is a listing and a read of the log per write
        current = self.table(path)
        try:
            with self._lock(path):
                write_deltalake(current or self.uri(path), data, **options)
        except CommitFailedError as exc:
            raise CommitConflict(f"concurrent commit on {path}: {exc}") from None
        except (DeltaError, OSError, pa.ArrowInvalid) as exc:
            raise StorageError(f"cannot write {path}: {scrub(str(exc).splitlines()[0])}") from None
        if current is not None:
            return current.version()
        dt = self.table(path)
        assert dt is not None
        return dt.version()

    def commit_files(
        self,
        path: str,
        files: list[DataFile],
        *,
        schema: pa.Schema,
        mode: str = "append",
        metadata: dict[str, Any] | None = None,
        partition_by: list[str] | None = None,
        description: str | None = None,
        replace: list[dict[str, Any]] | None = None,
        remove: list[LoggedFile] | None = None,
        base: DeltaTable | None = None,
        data_change: bool = True,
    ) -> int:
        """Commit Parquet files an engine wrote into the table's folder as one commit (the
        table created with ``schema`` when there is none; ``mode`` append or overwrite, the
        table's schema unchanged); returns the new version. Files no commit names are not
        part of the table; vacuum removes them.

        ``replace`` (with ``mode`` overwrite): only the files of these partitions (values of
        ``partition_by``; None is the NULL partition) are removed, in the same commit.
        ``remove`` (with ``mode`` append): these files of version ``base`` are removed in the
        same commit (a rewrite of the files a MERGE touched); the commit is made on ``base``,
        so a commit since that removed them too fails as a conflict instead of leaving their
        rows twice. ``data_change`` false: the files hold the rows they replace (compaction)."""
        self.fence()
        now = int(time.time() * 1000)
        removed = list(remove or [])
        current = base or self.table(path)
        if current is not None and replace is not None and mode == "overwrite":
            columns = sorted(current.metadata().partition_columns)
            if any(sorted(p) != columns for p in replace):
                # files of other partitions would stay beside the new ones: rows twice
                raise StorageError(
                    f"cannot replace partitions of {path}: it is partitioned by {columns}"
                )
            removed += _in_partitions(self.logged_files(current), replace)
            mode = "append"  # delta-rs: explicit removals go with an append
        adds: list[AddAction | RemoveAction] = [
            AddAction(f.path, f.size, f.partition_values, now, data_change, f.stats) for f in files
        ]
        adds += [
            RemoveAction(f.path, data_change, now, f.size, f.partition_values) for f in removed
        ]
        try:
            with self._lock(path):
                if current is None:
                    create_table_with_add_actions(
                        self.uri(path),
                        Schema.from_arrow(schema),
                        [a for a in adds if isinstance(a, AddAction)],
                        mode="error",
                        partition_by=partition_by,
                        description=description,
                        configuration=CHECKPOINT_EVERY,
                        storage_options=self.storage_options,
                        commit_properties=_props(metadata),
                    )
                else:
                    current.create_write_transaction(
                        adds,
                        mode,
                        schema,
                        partition_by=partition_by,
                        commit_properties=_props(metadata),
                    )
        except CommitFailedError as exc:
            raise CommitConflict(f"concurrent commit on {path}: {exc}") from None
        except (DeltaError, OSError) as exc:
            raise StorageError(
                f"cannot commit to {path}: {scrub(str(exc).splitlines()[0])}"
            ) from None
        dt = self.table(path)
        assert dt is not None
        return dt.version()

    def files_are_the_rows(self, dt: DeltaTable) -> bool:
        """Whether reading the data files of ``dt`` gives its rows: a local table whose
        protocol has no reader features (deletion vectors, column mapping)."""
        protocol = dt.protocol()
        return self.is_local and protocol.min_reader_version == 1 and not protocol.reader_features

    def logged_files(self, dt: DeltaTable) -> list[LoggedFile]:
        """The data files of version ``dt``, as the log names them (``local``: where they are
        when the table is local)."""
        adds = pa.table(dt.get_add_actions(flatten=False)).to_pylist()
        root = dt.table_uri.removeprefix("file://").rstrip("/")
        return [
            LoggedFile(
                local=f"{root}/{unquote(a['path'])}",
                path=a["path"],
                size=a["size_bytes"],
                partition_values={k: _text(v) for k, v in (a.get("partition") or {}).items()},
            )
            for a in adds
        ]

    def merge(
        self,
        path: str,
        source: pa.Table | pa.RecordBatchReader,
        *,
        on: Iterable[str],
        update_when: str | None = None,
        insert: bool = True,
        delete_not_matched: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Upsert ``source`` into the table by key ``on``; returns delta-rs merge metrics.

        ``update_when`` restricts updates to matched rows satisfying it (e.g.
        only rows whose content changed), so unchanged rows write nothing.
        """
        self.fence()
        dt = self.table(path)
        if dt is None:
            self.write(path, source, mode="append", metadata=metadata)
            return {"num_target_rows_updated": 0}
        predicate = " AND ".join(f"t.{_q(k)} = s.{_q(k)}" for k in on)
        with self._lock(path), _translated(path, "merge into"):
            merger = _merger(dt, source, predicate, metadata, merge_schema=True)
            merger = merger.when_matched_update_all(predicate=update_when)
            if insert:
                merger = merger.when_not_matched_insert_all()
            if delete_not_matched:
                merger = merger.when_not_matched_by_source_delete(delete_not_matched)
            return dict(merger.execute())

    def update_columns(
        self,
        path: str,
        source: pa.Table | pa.RecordBatchReader,
        *,
        on: Iterable[str],
        metadata: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Set the non-key columns of ``source`` on the rows matching it by ``on``, in one
        commit (also when ``source`` is empty, to stamp ``metadata``)."""
        self.fence()
        dt = self.table(path)
        assert dt is not None
        keys = list(on)
        predicate = " AND ".join(f"t.{_q(k)} = s.{_q(k)}" for k in keys)
        updates = {c: f"s.{_q(c)}" for c in source.schema.names if c not in keys}
        with self._lock(path), _translated(path, "update"):
            merger = _merger(dt, source, predicate, metadata)
            return dict(merger.when_matched_update(updates).execute())

    def merge_scd2(
        self,
        path: str,
        staged: pa.Table | pa.RecordBatchReader,
        *,
        key: str,
        columns: list[str],
        metadata: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Apply an SCD2 change set in one commit.

        ``staged`` holds closing rows (``_merge_key`` = key: set ``effective_to``,
        ``is_current = false`` on the current version) and new versions
        (``_merge_key`` NULL: never match, so they are inserted).
        """
        self.fence()
        dt = self.table(path)
        assert dt is not None
        with self._lock(path), _translated(path, "merge into"):
            merger = _merger(dt, staged, f"t.{_q(key)} = s._merge_key AND t.is_current", metadata)
            merger = merger.when_matched_update(
                {
                    "effective_to": "s.effective_to",
                    "is_current": "false",
                    "_updated_at": "s._updated_at",
                }
            ).when_not_matched_insert(
                {c: f"s.{_q(c)}" for c in columns}, predicate="s._merge_key IS NULL"
            )
            return dict(merger.execute())

    def restore(self, path: str, version: int, metadata: dict[str, Any] | None = None) -> int:
        """The table as of ``version``, as one new commit stamped with ``metadata``; returns
        the new version."""
        self.fence()
        dt = self.table(path)
        assert dt is not None
        with self._lock(path), _translated(path, "restore"):
            dt.restore(version, commit_properties=_props(metadata))
        return dt.version()

    def delete(self, path: str, predicate: str, metadata: dict[str, Any] | None = None) -> int:
        """Delete the rows matching ``predicate`` in one commit; returns how many."""
        self.fence()
        dt = self.table(path)
        if dt is None:
            return 0
        with self._lock(path), _translated(path, "delete from"):
            done = dt.delete(predicate, commit_properties=_props(metadata))
            return int(done.get("num_deleted_rows", 0))

    def content_version(self, path: str) -> int:
        """The newest version that changed the table's rows (-1: no table): maintenance
        commits (compaction) rewrite files, not content, so nothing downstream rebuilds."""
        for c in self.commits(path, limit=100):
            if not is_maintenance(c):
                return int(c["version"])
        dt = self.table(path)
        return -1 if dt is None else dt.version()

    def version_at(self, path: str, when: datetime) -> int | None:
        """The version of ``path`` current at ``when`` (None: the table did not exist yet)."""
        at_ms = when.timestamp() * 1000
        found = [int(c["version"]) for c in self.commits(path) if c["timestamp"] <= at_ms]
        return max(found, default=None)

    def maintain(
        self,
        path: str,
        retain_hours: int,
        keep_versions: list[int] | None = None,
        *,
        compact: bool = True,
    ) -> dict[str, Any]:
        """Compact small files (unless ``compact`` is false: a clustered table, whose files an
        engine compacts month by month), write a checkpoint, vacuum files older than
        ``retain_hours`` that no version since needs (nor ``keep_versions``), and expire old
        log entries.

        Its commits (OPTIMIZE, VACUUM START/END) carry the state rcmlake reads from a table's newest commit
        (watermark, content hash, rules and gold fingerprint), so maintenance never makes a
        run reload or rebuild anything; it names no batch, so no audit row is expected.
        """
        self.fence()
        dt = self.table(path)
        if dt is None:
            return {}
        meta = self.maintenance_metadata(path)
        compacted: dict[str, Any] = {}
        with self._lock(path), _translated(path, "maintain"):
            if compact:
                compacted = dt.optimize.compact(commit_properties=_props(meta))
            dt.create_checkpoint()
            removed = dt.vacuum(
                retention_hours=retain_hours,
                dry_run=False,
                enforce_retention_duration=False,
                keep_versions=keep_versions,
                commit_properties=_props(meta),  # VACUUM START/END are commits too
            )
            dt.cleanup_metadata()
        return {
            "files_compacted": int(compacted.get("numFilesRemoved", 0)),
            "files_added": int(compacted.get("numFilesAdded", 0)),
            "files_vacuumed": len(removed),
            "version": dt.version(),
        }

    def maintenance_metadata(self, path: str) -> dict[str, Any]:
        """The metadata of a commit that only rewrites files of ``path``: the state of its
        newest commit that states one, marked as maintenance (``is_maintenance``)."""
        state: dict[str, Any] = next(
            (c["rcmlake"] for c in self.commits(path, limit=50) if c["rcmlake"]), {}
        )
        return {k: v for k, v in state.items() if k in STATE_KEYS} | {"operation": "maintenance"}

    def commits_since(self, path: str, version: int) -> list[dict[str, Any]] | None:
        """The commits of ``path`` after ``version``, newest first (``commits``), or None when
        the log no longer holds them all (entries expired: what happened between is unknown)."""
        table = self.table(path)
        newer = 0 if table is None else table.version() - version
        if newer <= 0:
            return []
        commits = [c for c in self.commits(path, limit=newer) if int(c["version"]) > version]
        return commits if len(commits) == newer else None

    def commits(self, path: str, limit: int | None = None) -> list[dict[str, Any]]:
        """Commit infos, newest first, with rcmlake's metadata unpacked under ``rcmlake``."""
        dt = self.table(path)
        if dt is None:
            return []
        out = []
        for info in dt.history(limit):
            # delta-rs keeps custom metadata as commitInfo keys; Spark as one JSON userMetadata
            user = _load(info.get("userMetadata"))
            fields = {**info, **(user if isinstance(user, dict) else {})}
            meta = {
                k.removeprefix(META_PREFIX): _load(v)
                for k, v in fields.items()
                if k.startswith(META_PREFIX)
            }
            out.append({**info, "rcmlake": meta})
        return out


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _in_partitions(files: list[LoggedFile], partitions: list[dict[str, Any]]) -> list[LoggedFile]:
    """The files of ``partitions`` (partition values; None is the NULL partition), values
    compared as the engines' writers record them (``str``)."""
    wanted = {tuple(sorted((k, _text(v)) for k, v in p.items())) for p in partitions}
    return [f for f in files if tuple(sorted(f.partition_values.items())) in wanted]


def vouched(commits: list[dict[str, Any]]) -> set[int]:
    """Versions among ``commits`` (from ``Lake.commits``) that carry no rcmlake metadata of
    their own but are described by a later commit's (``VOUCHES_FOR``)."""
    versions = {int(c["version"]): c for c in commits}
    found = set()
    for commit in commits:
        target = commit["rcmlake"].get(VOUCHES_FOR)
        if target is not None and int(target) in versions and not versions[int(target)]["rcmlake"]:
            found.add(int(target))
    return found


# commit metadata of rcmlake's own file MERGE (engines/duckdb.py): the source rows it inserted
ROWS_INSERTED = "rows_inserted"


def kept_keys(commit: dict[str, Any]) -> bool:
    """Whether a commit (from ``Lake.commits``) is known to have inserted and deleted no row:
    a MERGE whose metrics say so (delta-rs, Spark's Delta and Sail name them), rcmlake's file
    MERGE that recorded none inserted (it deletes none), or a write of no row that removed no
    file (the empty commit that stamps a MERGE its engine could not stamp: Sail's). Unknown
    counts as no."""
    if ROWS_INSERTED in commit["rcmlake"]:
        return int(commit["rcmlake"][ROWS_INSERTED]) == 0
    metrics = commit.get("operationMetrics") or {}
    if commit.get("operation") == "WRITE":
        written = (metrics.get("num_added_rows"), metrics.get("num_removed_files"))
        return written == (0, 0)
    if commit.get("operation") != "MERGE":
        return False
    counts = [
        metrics[name]
        for names in (
            ("num_target_rows_inserted", "numTargetRowsInserted"),
            ("num_target_rows_deleted", "numTargetRowsDeleted"),
        )
        for name in names
        if name in metrics
    ]
    return len(counts) == 2 and all(int(c) == 0 for c in counts)


def is_maintenance(commit: dict[str, Any]) -> bool:
    """Whether a commit (from ``Lake.commits``) only rewrote files (``Lake.maintain``)."""
    return bool(commit["rcmlake"].get("operation") == "maintenance")


def _merger(
    dt: DeltaTable,
    source: pa.Table | pa.RecordBatchReader,
    predicate: str,
    metadata: dict[str, Any] | None,
    **options: Any,
) -> TableMerger:
    """A MERGE of ``source`` (alias ``s``) into ``dt`` (alias ``t``) stamped with ``metadata``."""
    return dt.merge(
        source,
        predicate,
        source_alias="s",
        target_alias="t",
        commit_properties=_props(metadata),
        **options,
    )


@contextmanager
def _translated(path: str, doing: str) -> Iterator[None]:
    """deltalake's exceptions as rcmlake's: a lost commit race is transient, the rest is not."""
    try:
        yield
    except CommitFailedError as exc:
        raise CommitConflict(f"concurrent commit on {path}: {exc}") from None
    except DeltaError as exc:
        raise StorageError(f"cannot {doing} {path}: {scrub(str(exc).splitlines()[0])}") from None


def custom_metadata(metadata: dict[str, Any]) -> dict[str, str]:
    """rcmlake's commit metadata as commitInfo entries: ``rcmlake.<key>`` → JSON."""
    return {META_PREFIX + k: json.dumps(v) for k, v in metadata.items()}


def _props(metadata: dict[str, Any] | None) -> CommitProperties | None:
    if not metadata:
        return None
    return CommitProperties(custom_metadata=custom_metadata(metadata))


def _load(value: Any) -> Any:
    try:
        return json.loads(value) if isinstance(value, str) else value
    except json.JSONDecodeError:
        return value


def _q(name: str) -> str:
    return f"`{name}`"


def _env_storage_options(root: str) -> dict[str, str]:
    """Object-store credentials come from the environment, never from config."""
    if not root.startswith("s3://"):
        return {}
    keys = {
        "AWS_ACCESS_KEY_ID": "aws_access_key_id",
        "AWS_SECRET_ACCESS_KEY": "aws_secret_access_key",
        "AWS_REGION": "aws_region",
        "AWS_ENDPOINT_URL": "aws_endpoint",
        "AWS_SESSION_TOKEN": "aws_session_token",
    }
    opts = {v: os.environ[k] for k, v in keys.items() if k in os.environ}
    if opts.get("aws_endpoint", "").startswith("http://"):
        opts["aws_allow_http"] = "true"
    opts.setdefault("aws_conditional_put", "etag")
    return opts
