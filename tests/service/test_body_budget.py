"""BODY_BUDGET_BYTES: the request-body bytes one process holds at once, reserved before admission (declared
or as they arrive) and given back however the request ends. Driven at the ASGI level on the app's own loop,
so a test can hold bodies half-sent, see who is refused, then let the clients leave."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from cgan_testing.asgi import post_scope
from service.config import Settings
from service.http.middleware import Guard

INFER = "/v2/models/digits/infer"
#: Small enough that a handful of stalled bodies fill it; the smallest that MAX_INFER_BODY_BYTES allows.
LIMITS = {"max_body_bytes": 1024, "max_infer_body_bytes": 4096, "body_budget_bytes": 16384}
SMALL = json.dumps(
    {"inputs": [{"name": "label", "shape": [1], "datatype": "INT64", "data": [1]}], "parameters": {"seed": 1}}
).encode()


class Call:
    """One HTTP request fed to the app by hand: body chunks when the test says, or a disconnect."""

    def __init__(self, app: Any, path: str, headers: dict[str, str]) -> None:
        self.incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sent: list[dict[str, Any]] = []
        scope = post_scope(
            path, [(k.lower().encode(), v.encode()) for k, v in {"host": "t", **headers}.items()], ("t", 80)
        )
        self.task = asyncio.ensure_future(app(scope, self.incoming.get, self._send))

    async def _send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    def feed(self, chunk: bytes, more: bool = True) -> None:
        self.incoming.put_nowait({"type": "http.request", "body": chunk, "more_body": more})

    def leave(self) -> None:
        self.incoming.put_nowait({"type": "http.disconnect"})

    @property
    def status(self) -> int | None:
        starts = [m for m in self.sent if m["type"] == "http.response.start"]
        return starts[0]["status"] if starts else None

    def header(self, name: str) -> str | None:
        (start,) = [m for m in self.sent if m["type"] == "http.response.start"]
        return dict(start["headers"]).get(name.encode(), b"").decode() or None

    def json(self) -> Any:
        return json.loads(
            b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")
        )


async def _settle() -> None:
    """Let every call run until it waits for the client (or is done)."""
    for _ in range(50):
        await asyncio.sleep(0)


def _on_loop(client: TestClient, scenario: Callable[[Any], Any]) -> Any:
    return client.portal.call(scenario, client.app)  # type: ignore[union-attr]


def _guard(client: TestClient) -> Guard:
    return client.app.state.guard  # type: ignore[attr-defined]


def test_stalled_bodies_beyond_the_budget_are_refused_before_they_are_read(
    models_dir: Path, open_client, metric
) -> None:
    """The report: many clients declare a large body, send a little and stall; the bodies were buffered
    before admission, outside MAX_QUEUE. Now the fourth 4096-byte body is a 429: large bodies may use seven
    eighths of the 16384-byte budget (14336 bytes), and the rest stays for small ones, so a small body still
    gets in while the large ones stall."""

    async def scenario(app: Any) -> None:
        stalled = [Call(app, INFER, {"content-length": "4096"}) for _ in range(6)]
        for call in stalled:
            call.feed(b"{" + b" " * 99)
        await _settle()
        statuses = [call.status for call in stalled]
        assert statuses == [None] * 3 + [429] * 3, statuses
        refused = stalled[3]
        assert refused.header("retry-after") == "2"
        assert refused.header("connection") == "close"
        assert refused.json()["error"].startswith("body: BODY_BUDGET_BYTES (16384 bytes)")
        assert _guard(client).budget.in_use == 12288
        large = Call(app, INFER, {"content-length": "2000"})  # 14288 of the large bodies' 14336
        small = Call(app, INFER, {"content-length": "1000"})  # past 14336: only the reserve holds it
        for call in (large, small):
            call.feed(b" " * 10)
        await _settle()
        assert (large.status, small.status, _guard(client).budget.in_use) == (None, None, 15288)
        for call in (large, small, *stalled[:3]):
            call.leave()
        await asyncio.gather(large.task, small.task, *(call.task for call in stalled))
        assert _guard(client).budget.in_use == 0

    with open_client(models_dir, retry_after_seconds=2, **LIMITS) as client:
        _on_loop(client, scenario)
        assert metric(client, "cgan_http_requests_rejected_total", {"reason": "body_budget"}) == 3


def test_a_chunked_body_is_refused_once_it_outgrows_the_budget(models_dir: Path, open_client) -> None:
    """Without Content-Length the bytes are reserved as they arrive."""

    async def scenario(app: Any) -> None:
        holders = [Call(app, INFER, {"content-length": str(size)}) for size in (4096, 4096, 4096)]
        for call in holders:
            call.feed(b" " * 10)
        chunked = Call(app, INFER, {})
        chunked.feed(b" " * 1500)
        await _settle()
        assert chunked.status is None  # 12288 + 1500 fit the large bodies' 14336; 1000 more do not
        chunked.feed(b" " * 1000)
        await _settle()
        assert chunked.status == 429, chunked.sent
        for call in holders:
            call.leave()
        await asyncio.gather(chunked.task, *(call.task for call in holders))
        assert _guard(client).budget.in_use == 0

    with open_client(models_dir, **LIMITS) as client:
        _on_loop(client, scenario)


def test_the_budget_is_back_to_zero_after_every_way_a_request_ends(models_dir: Path, open_client) -> None:
    """Served, refused by the budget, too large (413), not JSON (422), gzip that does not inflate (400),
    and left half-sent: after many of each, nothing is still reserved (left while queued: below)."""

    async def scenario(app: Any) -> None:
        guard = _guard(client)
        for _ in range(20):
            calls = []
            served = Call(app, INFER, {"content-length": str(len(SMALL))})
            served.feed(SMALL, more=False)
            too_large = Call(app, INFER, {"content-length": "5000"})
            not_json = Call(app, INFER, {"content-length": "3"})
            not_json.feed(b"{{{", more=False)
            bad_gzip = Call(app, INFER, {"content-length": "4", "content-encoding": "gzip"})
            bad_gzip.feed(b"\x1f\x8b\x00\x00", more=False)
            half_sent = Call(app, INFER, {"content-length": "4000"})
            half_sent.feed(b" " * 100)
            calls += [served, too_large, not_json, bad_gzip, half_sent]
            fillers = [Call(app, INFER, {"content-length": "4096"}) for _ in range(4)]
            calls += fillers
            await _settle()
            half_sent.leave()
            for call in fillers:
                call.leave()
            await asyncio.gather(*(call.task for call in calls))
            assert [served.status, too_large.status, not_json.status, bad_gzip.status] == [200, 413, 422, 400]
            assert 429 in [call.status for call in fillers]  # the budget was full: refusals happened too
            assert guard.budget.in_use == 0

    with open_client(models_dir, **LIMITS) as client:
        _on_loop(client, scenario)


def test_a_request_holds_its_body_until_it_ends(models_dir: Path, open_client, gate) -> None:
    """A running or queued request keeps its body in memory: its bytes stay reserved until it answers, or
    until its client leaves the queue."""
    entered, release = gate

    async def scenario(app: Any) -> None:
        budget = _guard(client).budget
        running = Call(app, INFER, {"content-length": str(len(SMALL))})
        running.feed(SMALL, more=False)
        for _ in range(200):
            if entered.is_set():
                break
            await asyncio.sleep(0.01)
        assert entered.is_set()
        assert budget.in_use == len(SMALL)
        queued = Call(app, INFER, {"content-length": str(len(SMALL))})
        queued.feed(SMALL, more=False)
        await _settle()
        assert queued.status is None and budget.in_use == 2 * len(SMALL)
        queued.leave()
        await queued.task
        assert budget.in_use == len(SMALL)
        release.set()
        await running.task
        assert running.status == 200
        assert budget.in_use == 0

    with open_client(models_dir, max_concurrency=1, **LIMITS) as client:
        _on_loop(client, scenario)


def test_the_budget_must_hold_the_largest_body(models_dir: Path) -> None:
    """A budget smaller than one largest body (and its inflated copy) would refuse it for ever."""
    with pytest.raises(ValidationError, match="BODY_BUDGET_BYTES"):
        Settings(
            models_dir=models_dir, max_body_bytes=1024, max_infer_body_bytes=4096, body_budget_bytes=9361
        )
    # 9362 - 9362 // 8 = 8192: the largest body and its inflated copy fit what large bodies may use.
    assert Settings(
        models_dir=models_dir, max_body_bytes=1024, max_infer_body_bytes=4096, body_budget_bytes=9362
    )


@pytest.mark.slow
def test_a_real_server_refuses_stalled_large_bodies_and_keeps_its_memory(
    tmp_path: Path, models_dir: Path
) -> None:
    """The report, end to end at a smaller scale: 40 connections each declare a 4 MiB - 1 inference body,
    send all but its last byte and stall. All but the four the 16 MiB budget holds are answered 429 at once,
    and the server's memory grows by about the budget, not by what the clients sent (160 MiB)."""
    from cgan_testing.live_server import LiveServer

    server = LiveServer(models_dir, tmp_path / "server.log", WORKERS="1", GRPC_PORT="0")
    sockets = []
    try:

        def rss_mb() -> float:
            status = Path(f"/proc/{server.process.pid}/status").read_text()
            return int(next(ln for ln in status.splitlines() if ln.startswith("VmRSS:")).split()[1]) / 1024

        before = rss_mb()
        head = (
            f"POST {INFER} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            f"Content-Length: {4 * 1024 * 1024 - 1}\r\n\r\n"
        ).encode()
        for _ in range(40):
            sock = server.connect()
            sock.sendall(head)
            sockets.append(sock)
        answers = []
        for sock in sockets:  # a refusal comes from the declared length alone, before any body byte
            sock.settimeout(1)
            try:
                answers.append(sock.recv(64))
            except TimeoutError:  # admitted to the budget: its body is being read
                answers.append(b"")
        refused = sum(a.startswith(b"HTTP/1.1 429") for a in answers)
        for sock, answer in zip(sockets, answers, strict=True):
            if not answer:
                sock.settimeout(10)
                sock.sendall(b" " * (4 * 1024 * 1024 - 2))  # all but the last byte, then stall
        grown = rss_mb() - before
    finally:
        for sock in sockets:
            sock.close()
        server.stop()
    assert refused >= 30, answers
    assert grown < 48, f"RSS grew {grown:.0f} MB"  # 4 bodies held (16 MiB) and what refusing them costs
