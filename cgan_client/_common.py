"""What the core (:mod:`cgan_client._core`) and both transports share: settings, errors, the retry rule."""

from __future__ import annotations

import datetime
import email.utils
import time
from dataclasses import dataclass
from typing import Any

import httpx

#: Seconds an idle pooled connection is kept; below the server's keep-alive timeout (5 s).
KEEPALIVE_EXPIRY = 2.0
#: Statuses that mean "not now": the service says when to come back in Retry-After.
RETRYABLE = frozenset({429, 503})
#: The service's default order of a data set's images: class-mixed, ready to train on as it streams.
DEFAULT_ORDER = "shuffled"


class ServiceError(Exception):
    """The service refused a request: ``status``, its ``detail`` (which names the field) and ``field``."""

    def __init__(self, status: int, detail: str, field: str | None = None) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail
        self.field = field


@dataclass(frozen=True)
class Config:
    """A client's settings; plain data, so an input pipeline can rebuild the client in another process."""

    base_url: str
    token: str | None = None
    model: str | None = None
    version: int | None = None
    #: Further attempts after a 429/503, each after the Retry-After the service sent (bounded by
    #: ``max_retry_wait`` seconds); 0 turns retrying off.
    retries: int = 5
    max_retry_wait: float = 30.0
    timeout: float = 60.0

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def client_options(self) -> dict[str, Any]:
        # read timeout per chunk, so a long stream is fine as long as bytes keep coming. Idle connections
        # are dropped before the server's keep-alive timeout (uvicorn: 5 s) closes them: reusing one the
        # server is closing at that moment fails the request with a ReadError.
        return {
            "base_url": self.base_url,
            "headers": self.headers(),
            "timeout": self.timeout,
            "limits": httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY),
        }


def retry_delay(response: httpx.Response, attempt: int, config: Config) -> float | None:
    """Seconds to wait before trying again, or None when this response is final.

    Retry-After is read strictly (RFC 9110): ASCII digits (seconds) or an HTTP-date. Anything else
    (``²`` and other Unicode digits, fractions, signs, impossible dates) is as if it were absent: the
    back-off, 0.5 s doubling with each attempt."""
    if response.status_code not in RETRYABLE or attempt >= config.retries:
        return None
    delay = _retry_after(response.headers.get("retry-after", ""))
    if delay is None:
        delay = 0.5 * 2**attempt
    return min(max(delay, 0.0), config.max_retry_wait)


def _retry_after(value: str) -> float | None:
    value = value.strip(" \t")
    if not value:
        return None
    if value.isascii() and value.isdigit():
        return float(value)  # huge values are inf, capped by the caller
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": a time in UTC, not local time
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp() - time.time()


def error_from(response: httpx.Response, body: bytes) -> ServiceError:
    try:
        payload = httpx.Response(response.status_code, content=body).json()
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        detail = payload.get("detail") or payload.get("error") or body.decode(errors="replace")
        return ServiceError(response.status_code, str(detail), payload.get("field"))
    return ServiceError(response.status_code, body.decode(errors="replace")[:500] or response.reason_phrase)
