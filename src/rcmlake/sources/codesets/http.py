"""One HTTP client for the public code-set APIs: rate limit, retries, error translation.

httpx exceptions and retryable statuses (429, 5xx) become
:class:`SourceUnavailable` (transient) here and nowhere else; tenacity
retries them with exponential backoff, honouring ``Retry-After``.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from rcmlake.errors import SourceError, SourceUnavailable

RETRYABLE = {429, 500, 502, 503, 504}


class RateLimiter:
    """At most ``per_second`` requests per second across threads (a minimum spacing)."""

    def __init__(self, per_second: float):
        self.interval = 1.0 / per_second
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            delay = self._next - now
            self._next = max(now, self._next) + self.interval
        if delay > 0:
            time.sleep(delay)


class ApiClient:
    """GET JSON from one API with politeness and retries.

    Example::

        with ApiClient("https://clinicaltables.nlm.nih.gov/api/icd10cm/v3/search") as api:
            api.get_json(params={"terms": "E11.9", "sf": "code,name"})
    """

    def __init__(
        self,
        base_url: str,
        *,
        per_second: float = 5.0,
        timeout: float = 10.0,
        attempts: int = 4,
        backoff: float = 0.5,
        name: str = "api",
    ):
        self.name = name
        self.limiter = RateLimiter(per_second)
        self.attempts, self.backoff = attempts, backoff
        # no httpx base_url: it appends a slash, and ".../v3/search/" is not the NLM endpoint
        self.url = base_url
        self.client = httpx.Client(
            timeout=timeout,
            headers={"User-Agent": "rcmlake (+https://github.com/rcmlake)"},
        )
        self.requests = 0

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def get_json(self, path: str = "", params: dict[str, Any] | None = None) -> Any:
        retry = Retrying(
            retry=retry_if_exception_type(SourceUnavailable),
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=self.backoff, max=30),
            reraise=True,
        )
        return retry(self._get, path, params)

    def _get(self, path: str, params: dict[str, Any] | None) -> Any:
        self.limiter.wait()
        self.requests += 1
        try:
            response = self.client.get(self.url + path, params=params)
        except httpx.TransportError as exc:
            raise SourceUnavailable(f"{self.name}: {type(exc).__name__} reaching the API") from None
        if response.status_code in RETRYABLE:
            after = response.headers.get("Retry-After", "")
            if after.isdigit():
                time.sleep(min(int(after), 30))
            raise SourceUnavailable(f"{self.name}: HTTP {response.status_code}")
        if response.status_code >= 400:
            raise SourceError(
                f"{self.name}: HTTP {response.status_code} for {response.request.url.path}"
            )
        try:
            return response.json()
        except ValueError:
            raise SourceError(f"{self.name}: response is not JSON") from None
