"""Landing CSV parsing on bytes: line endings, BOM, the longest line, and no line lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from rcmlake.errors import FileRejected
from rcmlake.sources.files import LAYOUTS, read_file

HEADER = ",".join(LAYOUTS["claims"].columns)


def _row(i: int, status: str = "Paid") -> str:
    values = {c: "" for c in LAYOUTS["claims"].columns}
    values.update(ClaimID=f"C{i}", ClaimAmount="100.00", PaidAmount="80.00", ClaimStatus=status)
    return ",".join(values[c] for c in LAYOUTS["claims"].columns)


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_every_line_ending_reads_every_row(tmp_path: Path, newline: str) -> None:
    f = tmp_path / "claims.csv"
    f.write_bytes(
        ("\ufeff" + newline.join([HEADER, *(_row(i) for i in range(5))]) + newline).encode()
    )
    table = read_file(f, "claims")
    assert table["ClaimID"].to_pylist() == [f"C{i}" for i in range(5)]
    assert table["_malformed_line"].null_count == 5


def test_the_longest_line_is_named_by_its_number_and_its_bytes(tmp_path: Path) -> None:
    rows = [_row(0), _row(1, "x" * 300), _row(2)]
    f = tmp_path / "claims.csv"
    f.write_bytes(("\r\n".join([HEADER, *rows]) + "\r\n").encode())
    size = len(rows[1].encode())  # the terminator is not part of the line
    with pytest.raises(FileRejected, match=f"line 3 is {size:,} bytes, over the limit of 200"):
        read_file(f, "claims", max_line_bytes=200)
    assert read_file(f, "claims", max_line_bytes=size).num_rows == 3


def test_a_last_line_cut_short_rejects_and_a_missing_final_newline_does_not(
    tmp_path: Path,
) -> None:
    f = tmp_path / "claims.csv"
    f.write_bytes(("\n".join([HEADER, _row(0), _row(1)])).encode())
    assert read_file(f, "claims").num_rows == 2
    f.write_bytes(("\n".join([HEADER, _row(0), _row(1)[:5]])).encode())
    with pytest.raises(FileRejected, match="truncated: last line 3 is incomplete"):
        read_file(f, "claims")


@pytest.mark.parametrize("chunk", [1, 2, 3, 1 << 24])
def test_byte_offsets_equal_a_whole_file_mask_across_chunk_edges(
    chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``byte_offsets`` compares a file chunk by chunk; the offsets are those of one mask
    over the whole file, for terminators on, before and after every chunk edge."""
    import numpy as np

    import rcmlake.sources as sources

    monkeypatch.setattr(sources, "_CHUNK", chunk)
    for data in [
        b"",
        b"abc",
        b"\n",
        b"a\nb\n",
        b"\n\n\nx",
        b"ab\ncd\r\nef\n\n\n\n",
        "é\nü\n".encode(),
    ]:
        whole = np.flatnonzero(np.frombuffer(data, np.uint8) == ord("\n"))
        got = sources.byte_offsets(data, ord("\n"))
        assert got.tolist() == whole.tolist() and got.dtype == np.int64
