"""Landing files (insurer claims, CPT codes): checked, parsed and typed.

A file that cannot be read as a whole (empty, not UTF-8, wrong header,
truncated) raises :class:`FileRejected` with the reason, and the caller moves
it to ``rejected/``. A file that reads but has bad rows is kept whole: a row
with the wrong number of fields is stored with its raw text in
``_malformed_line``; a value that does not parse as its type is stored as
NULL with its column named (never its value) in ``_cast_errors``. Silver quarantines
both, so nothing is lost and nothing is silently coerced.
"""

from __future__ import annotations

import codecs
import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from rcmlake.engines.duckdb import connect
from rcmlake.errors import FileRejected, scrub
from rcmlake.sources import byte_offsets


@dataclass(frozen=True)
class Layout:
    columns: tuple[str, ...]
    types: dict[str, str]  # column -> DuckDB type; the rest stay VARCHAR


LAYOUTS = {
    "claims": Layout(
        columns=(
            "ClaimID",
            "TransactionID",
            "PatientID",
            "EncounterID",
            "ProviderID",
            "DeptID",
            "ServiceDate",
            "ClaimDate",
            "PayorID",
            "ClaimAmount",
            "PaidAmount",
            "ClaimStatus",
            "PayorType",
            "Deductible",
            "Coinsurance",
            "Copay",
            "InsertDate",
            "ModifiedDate",
        ),
        types={
            **{c: "DATE" for c in ("ServiceDate", "ClaimDate", "InsertDate", "ModifiedDate")},
            **{
                c: "DECIMAL(18,2)"
                for c in ("ClaimAmount", "PaidAmount", "Deductible", "Coinsurance", "Copay")
            },
        },
    ),
    "cpt_codes": Layout(
        columns=(
            "Procedure Code Category",
            "CPT Codes",
            "Procedure Code Descriptions",
            "Code Status",
        ),
        types={},
    ),
}


DEFAULT_MAX_LINE_BYTES = 1 << 20  # no claims or CPT row comes near 1 MiB; a bigger one is not data


def read_file(
    path: Path, layout_name: str, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> pa.Table:
    """Parse one landing file into an Arrow table of the layout's columns (typed) plus
    ``_cast_errors`` and ``_malformed_line``. A file with a line longer than
    ``max_line_bytes``, or that the CSV reader cannot parse, is rejected with the reason."""
    layout = LAYOUTS[layout_name]
    data = path.read_bytes()
    if not data.strip():
        raise FileRejected("empty file")
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        data.decode("utf-8")  # checked once; the file is parsed as bytes (a claims file is GBs)
    except UnicodeDecodeError as exc:
        raise FileRejected(f"not UTF-8 text (byte {exc.start})") from None
    ends = _line_ends(data)
    first = data[: ends[0]] if len(ends) else data
    header = [h.strip() for h in next(csv.reader([first.decode("utf-8").rstrip("\r")]))]
    if sorted(header) != sorted(layout.columns):
        missing = sorted(set(layout.columns) - set(header))
        extra = sorted(set(header) - set(layout.columns))
        raise FileRejected(f"unexpected header: missing {missing}, unexpected {extra}")
    lines = len(ends) + (0 if len(ends) and ends[-1] == len(data) - 1 else 1)
    if lines < 2:
        raise FileRejected("no data rows after the header")
    last = data[ends[-1] + 1 :].decode("utf-8")
    if last and len(next(csv.reader([last]))) != len(header):
        raise FileRejected(f"truncated: last line {lines} is incomplete")
    starts = np.concatenate(([0], ends + 1))
    stops = np.concatenate((ends, [len(data)]))
    lengths = stops - starts - (_bytes_at(data, stops - 1) == ord("\r"))
    longest = int(np.argmax(lengths))
    if lengths[longest] > max_line_bytes:
        raise FileRejected(
            f"line {longest + 1} is {int(lengths[longest]):,} bytes, over the limit of "
            f"{max_line_bytes:,} (the feed's max_line_bytes)"
        )
    malformed: list[tuple[int | None, str]] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        malformed.append((row.number, row.text))
        return "skip"

    try:
        table = pacsv.read_csv(
            pa.BufferReader(data),
            # a block holds whole rows: larger than the longest line allowed, so a long
            # quoted field never straddles two blocks
            read_options=pacsv.ReadOptions(
                column_names=header, skip_rows=1, block_size=max(1 << 20, 2 * max_line_bytes + 1)
            ),
            parse_options=pacsv.ParseOptions(
                invalid_row_handler=on_invalid, newlines_in_values=False
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={h: pa.string() for h in header},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as exc:
        raise FileRejected(
            f"cannot be parsed as CSV: {scrub(str(exc).splitlines()[0])[:200]}"
        ) from None
    table = table.select(list(layout.columns))
    return _typed(table, layout, malformed)


def _line_ends(data: bytes) -> np.ndarray:
    """Offsets of the line terminators of ``data`` (``\\n``; ``\\r`` in a file that has no
    ``\\n``), found without splitting the text into one Python string per line."""
    ends = byte_offsets(data, ord("\n"))
    return ends if len(ends) else byte_offsets(data, ord("\r"))


def _bytes_at(data: bytes, at: np.ndarray) -> np.ndarray:
    """The bytes of ``data`` at offsets ``at`` (0 where an offset is before the start)."""
    raw = np.frombuffer(data, np.uint8)
    return np.where(at >= 0, raw[np.clip(at, 0, max(len(raw) - 1, 0))], 0)


def _typed(raw: pa.Table, layout: Layout, malformed: list[tuple[int | None, str]]) -> pa.Table:
    con = connect()
    con.register("raw", raw)
    bad = pa.table(
        {
            "_line": pa.array([m[0] for m in malformed], pa.int64()),
            "_text": pa.array([m[1] for m in malformed], pa.string()),
        }
    )
    con.register("bad", bad)

    def cast(c: str) -> str:
        t = layout.types.get(c)
        src = f"nullif(trim(\"{c}\"), '')"
        return f"TRY_CAST({src} AS {t})" if t else src

    selects = ", ".join(f'{cast(c)} AS "{c}"' for c in layout.columns)
    checks = (
        ", ".join(
            f"CASE WHEN nullif(trim(\"{c}\"), '') IS NOT NULL AND {cast(c)} IS NULL THEN '{c}' END"
            for c in layout.types
        )
        or "NULL"
    )
    nulls = ", ".join(
        f'CAST(NULL AS {layout.types.get(c, "VARCHAR")}) AS "{c}"' for c in layout.columns
    )
    sql = f"""
        SELECT {selects},
               list_filter([{checks}], lambda x: x IS NOT NULL) AS _cast_errors,
               CAST(NULL AS VARCHAR) AS _malformed_line
        FROM raw
        UNION ALL BY NAME
        SELECT {nulls}, CAST([] AS VARCHAR[]) AS _cast_errors, _text AS _malformed_line FROM bad
    """
    return con.sql(sql).to_arrow_table()
