"""Fixtures of the integration tests: moto's S3 server on loopback and a bucket on it, and
records of what gold's incremental plan compares and of what silver streams."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.integration.s3 import SECRET


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server in its own process (in this one it would wait on the GIL while
    delta-rs blocks in a request to it)."""
    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=open(os.environ.get("RCMLAKE_MOTO_LOG", os.devnull), "w"),  # noqa: SIM115
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(endpoint, timeout=1)
            break
        except httpx.TransportError:
            assert server.poll() is None and time.monotonic() < deadline, "moto did not start"
            time.sleep(0.1)
    yield endpoint
    server.terminate()
    server.wait(10)


@pytest.fixture
def bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket, with the credentials in the environment only."""
    import boto3

    env = {
        "AWS_ACCESS_KEY_ID": "rcmlake-test",
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ALLOW_HTTP": "true",
        "RCMLAKE_MASKING_SALT": "object-store-test-salt",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    name = f"lake-{uuid.uuid4().hex[:10]}"
    boto3.client(
        "s3", endpoint_url=s3_endpoint, aws_access_key_id="x", aws_secret_access_key="y"
    ).create_bucket(Bucket=name)
    return name


@pytest.fixture
def compared(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every comparison gold's plan makes (``_Changes._diff``), as ``[old, *columns]``."""
    from rcmlake.layers.gold import _Changes

    made: list[list[str]] = []
    real_diff = _Changes._diff

    def spy(self: _Changes, old: str, new: str, columns: list[str], where: str) -> str | None:
        made.append([old, *columns])
        return real_diff(self, old, new, columns, where)

    monkeypatch.setattr(_Changes, "_diff", spy)
    return made


def _silver_answers(
    monkeypatch: pytest.MonkeyPatch, name: str, answer: Callable[[Any, Any], bool]
) -> list[tuple[str, bool]]:
    """``(entity, answer(result, model))`` for each call of ``silver.<name>``, whose
    arguments include the model being built."""
    from rcmlake.layers import silver
    from rcmlake.transforms import Model

    answers: list[tuple[str, bool]] = []
    real = getattr(silver, name)

    def spy(*args: Any) -> Any:
        got = real(*args)
        m = next(a for a in args if isinstance(a, Model))
        answers.append((m.name, answer(got, m)))
        return got

    monkeypatch.setattr(silver, name, spy)
    return answers


@pytest.fixture
def streamed(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool]]:
    """Each silver build's answer to whether it streams into a new table (``_streamed``)."""
    return _silver_answers(monkeypatch, "_streamed", lambda got, m: bool(got))


@pytest.fixture
def left_out(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool]]:
    """Each silver build's answer to whether it left older versions out (``_newest_rows``)."""
    return _silver_answers(monkeypatch, "_newest_rows", lambda got, m: got[0])


@pytest.fixture
def split_apart(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool]]:
    """Each silver build's answer to whether it split the staged rows by whether their key
    comes again (``_newest_rows``, ``Newest.split``)."""
    return _silver_answers(monkeypatch, "_newest_rows", lambda got, m: got.split)


@pytest.fixture
def rechecked(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The entities whose quarantined rows a build re-checked (``silver.evaluate`` over
    ``recheck``), in order."""
    from rcmlake.layers import silver

    names: list[str] = []
    evaluate = silver.evaluate

    def spy(s: Any, ctx: Any, m: Any, source: str, out: str) -> None:
        if source == "recheck":
            names.append(m.name)
        evaluate(s, ctx, m, source, out)

    monkeypatch.setattr(silver, "evaluate", spy)
    return names
