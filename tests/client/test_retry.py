"""The client's retry rule, without a server: which statuses are retried (429 and 503), how long it waits
(the Retry-After, in seconds or as a date, capped by max_retry_wait; else 0.5 s doubling), and when it
stops (after ``retries`` further attempts). A fake transport answers; sleeping is recorded, not done.
test_client.py shows the same against a real overloaded server."""

from __future__ import annotations

import asyncio
import email.utils
import io
import time
from collections.abc import Callable

import httpx
import numpy as np
import pytest

from cgan_client import AsyncClient, Client, Config, ServiceError, _common
from cgan_client import aclient as aclient_module
from cgan_client import client as client_module

IMAGES = np.zeros((2, 28, 28), np.uint8)


def _npy() -> bytes:
    out = io.BytesIO()
    np.save(out, IMAGES)
    return out.getvalue()


def _answers(*statuses: tuple[int, dict[str, str]]) -> tuple[list[httpx.Request], Callable]:
    """A handler answering ``statuses`` in turn (each ``(status, headers)``), then 200 with two images."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) <= len(statuses):
            status, headers = statuses[len(seen) - 1]
            return httpx.Response(status, headers=headers, json={"detail": "overloaded: retry later"})
        return httpx.Response(200, content=_npy())

    return seen, handler


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    waits: list[float] = []
    monkeypatch.setattr(client_module.time, "sleep", waits.append)

    async def no_wait(delay: float) -> None:
        waits.append(delay)

    monkeypatch.setattr(aclient_module.asyncio, "sleep", no_wait)
    return waits


def _client(handler: Callable, **options: object) -> Client:
    return Client("http://test", transport=httpx.MockTransport(handler), **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("status", [429, 503])
def test_429_and_503_are_retried_after_their_retry_after(slept: list[float], status: int) -> None:
    seen, handler = _answers((status, {"Retry-After": "2"}), (status, {"Retry-After": "1"}))
    with _client(handler) as client:
        images = client.generate(1, 2, seed=0)
    assert images.shape == (2, 28, 28) and len(seen) == 3
    assert slept == [2.0, 1.0]


def test_the_wait_is_capped_by_max_retry_wait(slept: list[float]) -> None:
    date = email.utils.formatdate(time.time() + 3600, usegmt=True)
    seen, handler = _answers((503, {"Retry-After": "120"}), (429, {"Retry-After": date}))
    with _client(handler, max_retry_wait=1.5) as client:
        client.generate(1, 2, seed=0)
    assert slept == [1.5, 1.5] and len(seen) == 3


def test_other_refusals_are_not_retried(slept: list[float]) -> None:
    for status in (500, 502, 422, 401):
        seen, handler = _answers((status, {"Retry-After": "1"}))
        with _client(handler) as client, pytest.raises(ServiceError) as raised:
            client.generate(1, 2, seed=0)
        assert raised.value.status == status and len(seen) == 1
    assert slept == []


def test_retries_stop_after_the_configured_number(slept: list[float]) -> None:
    seen, handler = _answers(*[(503, {"Retry-After": "0"})] * 4)
    with _client(handler, retries=3) as client, pytest.raises(ServiceError) as raised:
        client.generate(1, 2, seed=0)
    assert raised.value.status == 503 and raised.value.detail == "overloaded: retry later"
    assert len(seen) == 4 and slept == [0.0, 0.0, 0.0]
    seen, handler = _answers((429, {}))
    with _client(handler, retries=0) as client, pytest.raises(ServiceError):
        client.generate(1, 2, seed=0)
    assert len(seen) == 1


def test_the_async_client_retries_alike(slept: list[float]) -> None:
    seen, handler = _answers((503, {"Retry-After": "90"}), (429, {}))

    async def scenario() -> np.ndarray:
        transport = httpx.MockTransport(handler)
        async with AsyncClient("http://test", transport=transport, max_retry_wait=4.0) as client:
            return await client.generate(1, 2, seed=0)

    assert asyncio.run(scenario()).shape == (2, 28, 28)
    assert len(seen) == 3 and slept == [4.0, 1.0]


def _delay(status: int, headers: dict[str, str], attempt: int = 0, **config: object) -> float | None:
    response = httpx.Response(status, headers=headers)
    return _common.retry_delay(response, attempt, Config("http://test", **config))  # type: ignore[arg-type]


def test_retry_delay_reads_retry_after_or_backs_off() -> None:
    assert _delay(503, {"Retry-After": " 7 "}) == 7.0
    assert _delay(429, {}) == 0.5 and _delay(429, {}, attempt=2) == 2.0
    assert _delay(429, {"Retry-After": "soon"}, attempt=1) == 1.0  # unparseable: the back-off
    assert _delay(429, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # a date in the past
    future = email.utils.formatdate(time.time() + 10, usegmt=True)
    assert 8.0 <= _delay(503, {"Retry-After": future}) <= 10.0  # type: ignore[operator]
    assert _delay(503, {"Retry-After": "100"}, max_retry_wait=30.0) == 30.0
    assert _delay(429, {}, attempt=10, retries=20, max_retry_wait=5.0) == 5.0
    assert _delay(503, {"Retry-After": "1"}, attempt=5, retries=5) is None
    assert _delay(503, {"Retry-After": "1"}, attempt=4, retries=5) == 1.0
    assert _delay(500, {"Retry-After": "1"}) is None and _delay(200, {}) is None
