"""The lake's physical types: what every layer writes, whatever the engine produced.

Timestamps are UTC-tagged (the CDM says timestamps are UTC; naive ones
would become Delta ``timestamp_ntz``, which older Spark readers reject);
large and view strings become plain strings so schemas stay stable across
engines and drivers.
"""

from __future__ import annotations

from collections.abc import Iterator

import pyarrow as pa

UTC_TS = pa.timestamp("us", tz="UTC")


def plain(t: pa.DataType) -> pa.DataType:
    """Large and view strings/binaries as their plain types (drivers differ; the lake does not)."""
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_large_binary(t):
        return pa.binary()
    return t


def plain_strings(reader: pa.RecordBatchReader) -> pa.RecordBatchReader:
    """``reader`` with plain string types, batch by batch; everything else as delivered."""
    schema = pa.schema([pa.field(f.name, plain(f.type)) for f in reader.schema])
    if schema == reader.schema:
        return reader

    def batches() -> Iterator[pa.RecordBatch]:
        for b in reader:
            yield b.cast(schema)

    return pa.RecordBatchReader.from_batches(schema, batches())


def _field(f: pa.Field) -> pa.Field:
    t = plain(f.type)
    if pa.types.is_timestamp(t):
        t = UTC_TS
    elif pa.types.is_large_list(t) or pa.types.is_list_view(t) or pa.types.is_list(t):
        t = pa.list_(_field(pa.field("item", t.value_type)).type)
    return pa.field(f.name, t, nullable=True)


def lake_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema([_field(f) for f in schema])


def to_lake(table: pa.Table) -> pa.Table:
    schema = lake_schema(table.schema)
    return table if table.schema == schema else table.cast(schema)


def to_lake_stream(
    reader: pa.RecordBatchReader, comments: dict[str, str] | None = None
) -> pa.RecordBatchReader:
    """``reader`` in the lake's physical types, batch by batch (never one table in memory);
    ``comments`` become field metadata (Delta keeps them as column comments)."""
    notes = comments or {}
    fields = [
        _field(f).with_metadata({"comment": notes[f.name]}) if f.name in notes else _field(f)
        for f in reader.schema
    ]
    schema = pa.schema(fields)

    def batches() -> Iterator[pa.RecordBatch]:
        for b in reader:
            yield b.cast(schema)

    return pa.RecordBatchReader.from_batches(schema, batches())
