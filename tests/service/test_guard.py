"""The guard (token, body cap, concurrency limit) decides on the *routed* request, so no spelling of a path
(root_path prefix, percent-encoding, HEAD) reaches a generating route around it; the limiter's queue has a
time limit; a client that leaves while queued costs no generation (issue #17, items 1, 2 and 6)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cgan_testing.asgi import post_scope
from service.admission import ConcurrencyLimiter

TOKEN = "s3cret-token"


def _wait_for(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.01)


@pytest.fixture
def prefixed(models_dir: Path, make_app) -> Iterator[TestClient]:
    """Served as ``uvicorn --root-path /api`` serves it: scope path ``/api/...``, root_path ``/api``."""
    app = make_app(models_dir, api_token=TOKEN, max_body_bytes=1024)
    with TestClient(app, root_path="/api") as client:
        yield client


@pytest.mark.parametrize("prefix", ["/api", ""])
def test_guard_holds_behind_a_root_path(prefixed: TestClient, prefix: str) -> None:
    for method, path, body in (
        ("POST", "/generate", {"label": 1}),
        ("POST", "/dataset", {"per_label": 1}),
        ("GET", "/generate?label=1", None),
        ("HEAD", "/generate?label=1", None),
        ("POST", "/gen%65rate", {"label": 1}),
    ):
        response = prefixed.request(method, prefix + path, json=body)
        assert response.status_code == 401, (method, prefix + path, response.status_code)
    big = json.dumps({"label": 1, "model": "x" * 5000})
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    assert prefixed.post(prefix + "/generate", content=big, headers=auth).status_code == 413
    assert prefixed.post(prefix + "/generate", json={"label": 1}, headers=auth).status_code == 200


def test_other_spellings_never_reach_a_generating_route(prefixed: TestClient) -> None:
    for path in ("/api//generate", "/api/GENERATE", "/api/generate/", "/api/Dataset", "/api/dataset/"):
        response = prefixed.post(path, json={"label": 1, "per_label": 1}, follow_redirects=True)
        assert response.status_code in (401, 404, 405), (path, response.status_code)


def test_every_route_that_does_work_is_guarded(shared_client: TestClient) -> None:
    # A new POST route (an OIP /infer, say) is guarded unless someone decides otherwise, on purpose; a router
    # built without GuardedRoute (whose handle runs the guard) fails here.
    from service.http.middleware import GuardedRoute, is_guarded
    from service.routes import ROUTERS

    assert shared_client.app.router.route_class is GuardedRoute  # type: ignore[attr-defined]
    routes = [route for router in ROUTERS for route in router.routes]
    for route in routes:
        assert isinstance(route, GuardedRoute), route.path
        works = bool(route.methods - {"GET", "HEAD"}) or route.path == "/generate"
        assert is_guarded(route) == works, (route.path, route.methods)
    assert any(r.path == "/dataset" for r in routes)


def test_limiter_cancelled_waiter_raises_cancelled_error_even_after_a_release() -> None:
    async def scenario() -> None:
        limiter = ConcurrencyLimiter(1, 2)
        assert await limiter.acquire()
        waiter = asyncio.create_task(limiter.acquire())
        await asyncio.sleep(0)  # the waiter is queued now
        waiter.cancel()
        limiter.release()  # runs before the cancelled waiter resumes
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert limiter.active == 0 and not limiter._waiters
        assert await limiter.acquire() and limiter.active == 1

    asyncio.run(scenario())


def test_queue_wait_is_time_limited(models_dir: Path, open_client, gate, metric) -> None:
    entered, release = gate
    with open_client(models_dir, max_concurrency=1, max_queue=4, queue_timeout_seconds=0.3) as client:
        first: list = []
        thread = threading.Thread(target=lambda: first.append(client.post("/generate", json={"label": 1})))
        thread.start()
        assert entered.wait(10)
        started = time.monotonic()
        queued = client.post("/generate", json={"label": 2})
        waited = time.monotonic() - started
        assert queued.status_code == 503, queued.text
        assert queued.headers["retry-after"] == "1" and queued.json()["field"] is None
        assert "QUEUE_TIMEOUT_SECONDS" in queued.json()["detail"]
        assert 0.25 < waited < 5
        assert metric(client, "cgan_http_requests_rejected_total", {"reason": "queue_timeout"}) == 1
        release.set()
        thread.join(10)
        assert first[0].status_code == 200


def test_client_that_left_while_queued_is_not_computed(models_dir: Path, open_client, gate, metric) -> None:
    entered, release = gate
    with open_client(models_dir, max_concurrency=4) as client:
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        first: list = []
        thread = threading.Thread(
            target=lambda: first.append(client.post("/generate", json={"label": 1, "n": 3}))
        )
        thread.start()
        assert entered.wait(10)

        left = asyncio.Event()
        sent: list[dict] = []

        async def leaving_client() -> None:
            body = json.dumps({"label": 2, "n": 5}).encode()
            delivered = False

            async def receive() -> dict:
                nonlocal delivered
                if not delivered:
                    delivered = True
                    return {"type": "http.request", "body": body, "more_body": False}
                await left.wait()
                return {"type": "http.disconnect"}

            async def send(message: dict) -> None:
                sent.append(message)

            scope = post_scope(
                "/generate",
                [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))],
                state={},
            )
            await client.app(scope, receive, send)  # type: ignore[arg-type]

        gone = client.portal.start_task_soon(leaving_client)  # type: ignore[union-attr]
        _wait_for(lambda: runtime.batcher.waiting == 1)
        client.portal.call(left.set)  # type: ignore[union-attr]
        gone.result(10)  # returns without the gate opening: the request was cancelled, not computed
        assert not any(m["type"] == "http.response.start" and m["status"] == 200 for m in sent)
        release.set()
        thread.join(10)
        assert first[0].status_code == 200
        assert metric(client, "cgan_images_generated_total", {"model": "digits"}) == 3
        labels = {"route": "/generate", "method": "POST"}
        assert metric(client, "cgan_http_requests_total", {**labels, "status": "499"}) == 1
        assert metric(client, "cgan_http_requests_total", {**labels, "status": "200"}) == 1


def test_overload_is_shed_before_routing_only_for_paths_routed_to_guarded_routes(
    models_dir: Path, open_client, gate, metric
) -> None:
    entered, release = gate
    with open_client(models_dir, max_concurrency=1, max_queue=0) as client:
        guard = client.app.state.guard  # type: ignore[attr-defined]
        thread = threading.Thread(target=lambda: client.post("/generate", json={"label": 1}))
        thread.start()
        assert entered.wait(10)
        assert guard.limiter.full
        for _ in range(3):  # the first is refused by the guard after routing, the rest before routing
            refused = client.post("/generate", json={"label": 2})
            assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
        assert list(guard.routed) == [("POST", "/generate")]
        labels = {"route": "/generate", "method": "POST", "status": "429"}
        assert metric(client, "cgan_http_requests_total", labels) == 3
        assert client.get("/healthz").status_code == 200
        assert client.get("/generate/", params={"label": 1}, follow_redirects=False).status_code == 307
        release.set()
        thread.join(10)
