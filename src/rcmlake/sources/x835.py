"""X12 835 remittance advice files, parsed by ``oxedi`` into typed Arrow tables.

``oxedi`` (a Rust parser) reads any delimiters the ISA declares, one or many
interchanges per file, with or without line breaks, and reports implementation-
guide findings as diagnostics. A file it cannot parse, or with an error-level
finding (a control count that does not match, an unknown segment, an unclosed
envelope), is rejected with the first finding's kind, segment position and rule;
warnings are kept with the load.

The tables come back flattened (one row per CLP, SVC, CAS triplet, PLB) with
row positions linking each to its parent; here every row also gets the business
keys of its parents, so silver never has to join parts of one file:

- ``payment_key``: payer + trace (check/EFT) number + date + amount — the same for a
  re-sent file (the guides' own examples reuse one trace number for different payments);
- ``remittance_claim_key``: payment + CLP01 + CLP02 (a reversal, status 22, is its
  own row) + CLP07 + the claim's ordinal among equal ones;
- ``remittance_line_key``: claim + the line's ordinal;
- ``adjustment_key``: claim or line + group + reason + ordinal;
- ``remark_key``: claim or line + RARC code (LQ, MOA and MIA remark codes, which oxedi
  leaves in the segments, are read from them here).

Claims and service lines also carry ``adjustment_total``, the sum of their CAS amounts
(a claim's own and its lines'; 0 when none), for the balancing rules: summed here by
oxedi's row positions, it spares silver grouping every adjustment of the lake by its
text key and joining that to the claims (7M remittance claims at scale 10: 17 s of CPU
and 1.8 GB spilled).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import oxedi
import pyarrow as pa
import pyarrow.compute as pc

from rcmlake.engines.duckdb import connect
from rcmlake.errors import FileRejected, scrub
from rcmlake.sources import byte_offsets

PARTS = (
    "payments",
    "claims",
    "services",
    "adjustments",
    "remarks",
    "provider_adjustments",
    "segments",
)
ERROR = 1  # oxedi diagnostic level: 1 error, 2 warning


def read_835(path: Path) -> dict[str, pa.Table]:
    """The file's tables (``PARTS``), strings decoded and parent keys added."""
    try:
        result = oxedi.parse_file(path)
    except oxedi.ParseError as exc:
        raise FileRejected(f"not an X12 interchange: {scrub(str(exc))[:200]}") from None
    errors = [d for d in result.diagnostics if d.level == ERROR]
    if errors:
        d = errors[0]
        where = f"segment {d.segment}" if d.segment is not None else "the envelope"
        raise FileRejected(
            f"{len(errors)} X12 error(s); first: {d.kind} at {where} ({d.path}): {scrub(d.rule)}"
        )
    raw = {name: _decoded(pa.table(result.tables[name])) for name in result.tables.keys()}  # noqa: SIM118  (Tables is not iterable)
    return _keyed({**raw, "segments": _segment_table(result.document)})


def _segment_table(doc: oxedi.Document) -> pa.Table:
    """Every segment: its index, id and raw text (terminator included), as oxedi indexed it.

    Cut from the file's bytes by the positions of its terminators (numpy), not one Python
    object per segment: a 76 MB remittance file has 2.5M segments, which took 2.1-2.9 s
    that way. The cut is checked against oxedi's own segments (every one in a small file,
    a thousand in a large one); a file it does not apply to (whitespace between segments,
    a release character, text that is not UTF-8) is listed segment by segment."""
    n = len(doc)
    d = doc.delimiters
    data = doc.write()
    cut = _cut(data, n, d.segment, d.element) if d.release is None else None
    step = 1 if n <= 10_000 else n // 1_000
    if cut is not None and all(
        cut["raw"][i].as_py() == doc[i].raw.decode("utf-8", "replace")
        and cut["segment_id"][i].as_py() == doc[i].id.decode("ascii", "replace")
        for i in range(0, n, step)
    ):
        return cut
    return _listed(doc)


def _listed(doc: oxedi.Document) -> pa.Table:
    """The segments table from oxedi's segments, one Python object each (the reference)."""
    listed = [doc[i] for i in range(len(doc))]
    return pa.table(
        {
            "segment": pa.array([s.index for s in listed], pa.int64()),
            "segment_id": pa.array([s.id.decode("ascii", "replace") for s in listed]),
            "raw": pa.array([s.raw.decode("utf-8", "replace") for s in listed]),
        }
    )


def _cut(data: bytes, n: int, terminator: bytes, separator: bytes) -> pa.Table | None:
    """The segments of ``data`` when each starts right after the previous terminator."""
    if n == 0 or len(terminator) != 1 or len(separator) != 1 or len(data) >= 2**31:
        return None
    buf = np.frombuffer(data, dtype=np.uint8)
    ends = byte_offsets(buf, terminator[0]) + 1  # one past each terminator
    if len(ends) != n or np.isin(buf[ends[:-1]], np.frombuffer(b" \t\r\n", np.uint8)).any():
        return None
    offsets = np.concatenate([[0], ends]).astype(np.int32)
    starts = offsets[:-1]
    raw = pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data[: ends[-1]]))
    try:
        raw.validate(full=True)  # UTF-8; otherwise oxedi's bytes are decoded with replacement
        ids = _ids(buf, raw, starts, ends, separator[0], terminator[0])
        ids.validate(full=True)
    except pa.ArrowInvalid:
        return None
    return pa.table({"segment": pa.array(np.arange(n), pa.int64()), "segment_id": ids, "raw": raw})


def _ids(
    buf: np.ndarray, raw: pa.StringArray, starts: np.ndarray, ends: np.ndarray, sep: int, term: int
) -> pa.Array:
    """Each segment's id: its text up to the first element separator (or the terminator).

    X12 ids are two or three ASCII characters, so the bytes at offsets 2 and 3 say which;
    only a file with another id searches every separator (``_searched_ids``), which cost
    0.45 s of the 0.75 s this cut took for a 112 MB month, on bronze's critical path."""
    last = len(buf) - 1
    at = [buf[np.minimum(starts + k, last)] for k in range(4)]
    stop = [np.isin(b, (sep, term)) & (starts + k < ends) for k, b in enumerate(at)]
    ascii2 = ~stop[0] & ~stop[1] & (at[0] < 0x80) & (at[1] < 0x80)
    two = ascii2 & stop[2]
    three = ascii2 & ~stop[2] & (at[2] < 0x80) & stop[3]
    if not (two | three).all():
        return _searched_ids(buf, starts, ends, sep)
    return pc.if_else(
        pa.array(two),
        pc.utf8_slice_codeunits(raw, 0, 2),  # code points: the same as bytes in ASCII
        pc.utf8_slice_codeunits(raw, 0, 3),
    )


def _searched_ids(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, sep: int) -> pa.Array:
    """``_ids`` for any id: up to the first separator found after each segment's start."""
    seps = np.flatnonzero(buf == sep)
    k = np.searchsorted(seps, starts)
    first = np.where(k < len(seps), seps[np.minimum(k, len(seps) - 1)], len(buf))
    lengths = np.minimum(first, ends - 1) - starts
    id_offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    picked = np.repeat(starts - id_offsets[:-1], lengths) + np.arange(id_offsets[-1])
    return pa.StringArray.from_buffers(
        len(starts), pa.py_buffer(id_offsets), pa.py_buffer(buf[picked].tobytes())
    )


def _decoded(table: pa.Table) -> pa.Table:
    """X12 is ASCII text: binary columns as strings (a byte that is not UTF-8 rejects)."""
    for i, f in enumerate(table.schema):
        if pa.types.is_binary(f.type):
            try:
                table = table.set_column(i, f.name, pc.cast(table[f.name], pa.string()))
            except pa.ArrowInvalid:
                raise FileRejected(f"column {f.name} is not text") from None
    return table


KEYS_SQL = {
    "payments": """
        SELECT *, coalesce(payer_identifier, payer_id, payer_name) || '|' || trace_number || '|'
               || coalesce(CAST(payment_date AS VARCHAR), '') || '|' || CAST(total_payment_amount AS VARCHAR)
               AS payment_key
        FROM payments""",
    "claims": """
        SELECT c.*, p.payment_key, p.payment_date, p.payer_name,
               p.payment_key || '|' || c.claim_id || '|' || c.claim_status || '|'
                   || coalesce(c.payer_control_number, '') || '|'
                   || row_number() OVER (PARTITION BY c.payment, c.claim_id, c.claim_status,
                                                      c.payer_control_number ORDER BY c.segment)
                   AS remittance_claim_key,
               coalesce(t.total, 0) AS adjustment_total
        FROM claims c JOIN payments_k p ON p.row = c.payment
        LEFT JOIN (SELECT claim, sum(amount) AS total FROM adjustments GROUP BY claim) t
          ON t.claim = c.row""",
    "services": """
        SELECT s.*, c.remittance_claim_key,
               c.remittance_claim_key || '|' || row_number() OVER (PARTITION BY s.claim ORDER BY s.segment)
                   AS remittance_line_key,
               coalesce(t.total, 0) AS adjustment_total
        FROM services s JOIN claims_k c ON c.row = s.claim
        LEFT JOIN (SELECT service, sum(amount) AS total FROM adjustments GROUP BY service) t
          ON t.service = s.row""",
    "adjustments": """
        SELECT a.*, CASE WHEN a.service IS NULL THEN 'claim' ELSE 'line' END AS level,
               c.remittance_claim_key, l.remittance_line_key,
               coalesce(l.remittance_line_key, c.remittance_claim_key) || '|' || a.group_code || '|'
                   || a.reason_code || '|' || row_number() OVER (
                       PARTITION BY a.claim, a.service, a.group_code, a.reason_code ORDER BY a.segment, a.row)
                   AS adjustment_key
        FROM adjustments a JOIN claims_k c ON c.row = a.claim
        LEFT JOIN services_k l ON l.row = a.service""",
    # RARC remark codes: LQ*HE (line), MOA 03-07 (outpatient) and MIA 05, 20-23 (inpatient)
    # under the CLP (or SVC) that precedes them
    "remarks": """
        WITH codes AS (
            SELECT segment, segment_id, unnest(string_split(raw, '*')[2:]) AS value,
                   generate_subscripts(string_split(raw, '*')[2:], 1) AS element, raw
            FROM segments WHERE segment_id IN ('LQ', 'MOA', 'MIA')
        ), picked AS (
            SELECT segment, segment_id, rtrim(value, '~') AS code FROM codes
            WHERE (segment_id = 'LQ' AND element = 2 AND split_part(raw, '*', 2) = 'HE')
               OR (segment_id = 'MOA' AND element BETWEEN 3 AND 7)
               OR (segment_id = 'MIA' AND element IN (5, 20, 21, 22, 23))
        )
        SELECT p.segment, p.segment_id AS source_segment, p.code AS remark_code,
               CASE WHEN p.segment_id = 'LQ' THEN 'line' ELSE 'claim' END AS level,
               c.remittance_claim_key, l.remittance_line_key,
               coalesce(l.remittance_line_key, c.remittance_claim_key) || '|' || p.code AS remark_key
        FROM picked p
        JOIN claims_k c ON c.segment = (SELECT max(segment) FROM claims_k WHERE segment < p.segment)
        LEFT JOIN services_k l ON p.segment_id = 'LQ'
             AND l.segment = (SELECT max(segment) FROM services_k WHERE segment < p.segment)
        WHERE p.code <> ''""",
    "provider_adjustments": """
        SELECT a.*, p.payment_key,
               p.payment_key || '|' || a.reason_code || '|' || row_number() OVER (
                   PARTITION BY a.payment, a.reason_code ORDER BY a.segment) AS provider_adjustment_key
        FROM provider_adjustments a JOIN payments_k p ON p.row = a.payment""",
}


def _keyed(raw: dict[str, pa.Table]) -> dict[str, pa.Table]:
    con = connect()
    try:
        for name, table in raw.items():
            con.register(name, table)
        out = {"segments": raw["segments"]}
        for name, sql in KEYS_SQL.items():
            out[name] = con.sql(sql).to_arrow_table()
            con.register(f"{name}_k", out[name])
        return out
    finally:
        con.close()
