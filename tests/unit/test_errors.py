"""Error messages name where a problem is, never the data: PHI must not reach logs."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from rcmlake.errors import scrub
from rcmlake.storage.audit import LoadRecord


def test_scrub_removes_values_from_real_library_messages() -> None:
    with pytest.raises(pa.ArrowInvalid) as arrow:
        pacsv.read_csv(io.BytesIO(b"a,b,c\n1,2,3\nJane Roe,1970-01-01\n"))
    assert "Jane Roe" in str(arrow.value)
    assert "Jane Roe" not in scrub(str(arrow.value))
    assert "Expected 3 columns, got 2" in scrub(str(arrow.value))
    message = "Conversion Error: Could not convert string 'O''Brien' to INT32 (\"1970-13-45\")"
    assert scrub(message) == "Conversion Error: Could not convert string … to INT32 (…)"


def test_the_audit_record_never_stores_a_quoted_value() -> None:
    rec = LoadRecord(
        run_id="r", batch_id="b", layer="silver", datasource="*", table="patients", load_type="scd2"
    )
    rec.finish("failed", "DuckDB: Could not convert string '123-45-6789' to DATE")
    assert rec.error == "DuckDB: Could not convert string … to DATE"
