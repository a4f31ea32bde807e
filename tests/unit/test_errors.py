"""Error messages name where a problem is, never the data: PHI must not reach logs."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from rcmlake.errors import scrub


def test_scrub_removes_values_from_real_library_messages() -> None:
    with pytest.raises(pa.ArrowInvalid) as arrow:
        pacsv.read_csv(io.BytesIO(b"a,b,c\n1,2,3\nJane Roe,1970-01-01\n"))
    assert "Jane Roe" in str(arrow.value)
    assert "Jane Roe" not in scrub(str(arrow.value))
    assert "Expected 3 columns, got 2" in scrub(str(arrow.value))
    message = "Conversion Error: Could not convert string 'O''Brien' to INT32 (\"1970-13-45\")"
    assert scrub(message) == "Conversion Error: Could not convert string … to INT32 (…)"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("mysql://etl:p@ss:w@rd@db:3306/a", "mysql://etl:***@db:3306/a"),
        ("postgresql://:hunter2@db/x", "postgresql://:***@db/x"),
        ("MYSQL://etl:Secret1@db/a", "MYSQL://etl:***@db/a"),
        (
            "postgresql://etl@db/x?sslmode=require&password=Secret2",
            "postgresql://etl@db/x?sslmode=require&password=***",
        ),
        ("mssql://u@h/db?PWD=Secret3;Encrypt=yes", "mssql://u@h/db?PWD=***;Encrypt=yes"),
        ("az://lake/x?sig=abc%2Bdef&sv=2024", "az://lake/x?sig=***&sv=2024"),
        ("postgresql://etl@db:5432/x", "postgresql://etl@db:5432/x"),
    ],
)
def test_redaction_covers_every_place_a_password_hides(url: str, shown: str) -> None:
    from rcmlake.config.secrets import redact

    assert redact(url) == shown


def test_an_env_password_with_url_characters_stays_a_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sqlalchemy.engine import make_url

    from rcmlake.config.secrets import resolve_env

    monkeypatch.setenv("PW", "a@b:c/d?e")
    url = make_url(resolve_env("mysql://etl:${PW}@db:3306/a", url=True))
    assert (url.host, url.password, url.database) == ("db", "a@b:c/d?e", "a")
