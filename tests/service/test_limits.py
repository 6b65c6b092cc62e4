"""Overload (429 with Retry-After), the bearer token, and what bypasses both."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient


@pytest.fixture
def root(models_dir: Path) -> Path:
    """MODELS_DIR with digits v1."""
    return models_dir


def _in_background(call: Callable[[], object]) -> tuple[threading.Thread, list]:
    results: list = []
    thread = threading.Thread(target=lambda: results.append(call()))
    thread.start()
    return thread, results


def _wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_busy_with_no_queue_answers_429_with_retry_after(root: Path, open_client, gate, metric) -> None:
    entered, release = gate
    with open_client(root, max_concurrency=1, max_queue=0, retry_after_seconds=3) as client:
        thread, results = _in_background(lambda: client.post("/generate", json={"label": 1}))
        assert entered.wait(10)
        rejected = client.post("/generate", json={"label": 1})
        assert rejected.status_code == 429
        assert rejected.headers["retry-after"] == "3"
        assert rejected.json()["detail"].startswith("overloaded")
        assert client.post("/dataset", json={"per_label": 1}).status_code == 429
        # Probes, metrics and metadata bypass the limit.
        for path in ("/healthz", "/readyz", "/metrics", "/v1/models", "/v2/health/ready"):
            assert client.get(path).status_code == 200, path
        assert metric(client, "cgan_http_requests_rejected_total", {"reason": "overload"}) == 2
        assert (
            metric(
                client, "cgan_http_requests_total", {"route": "/generate", "method": "POST", "status": "429"}
            )
            == 1
        )
        release.set()
        thread.join(10)
        assert results[0].status_code == 200
        assert client.post("/generate", json={"label": 1}).status_code == 200


def test_queue_holds_up_to_max_queue_then_refuses(root: Path, open_client, gate, metric) -> None:
    entered, release = gate
    in_flight = "cgan_http_requests_in_flight"
    with open_client(root, max_concurrency=1, max_queue=1) as client:
        first, first_result = _in_background(lambda: client.post("/generate", json={"label": 1}))
        assert entered.wait(10)
        queued, queued_result = _in_background(lambda: client.post("/generate", json={"label": 2}))
        _wait_for(lambda: metric(client, in_flight) == 2)
        assert client.post("/generate", json={"label": 3}).status_code == 429
        release.set()
        first.join(10)
        queued.join(10)
        assert first_result[0].status_code == queued_result[0].status_code == 200


TOKEN = "s3cret-token"


@pytest.fixture
def secured(root: Path, open_client) -> Iterator[TestClient]:
    with open_client(root, api_token=TOKEN) as client:
        yield client


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": TOKEN},
        {"Authorization": f"Basic {TOKEN}"},
        # The whole token, not a prefix or an extension of it.
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Bearer {TOKEN} {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN[:-1]}"},
        {"Authorization": "Bearer "},
        {"Authorization": f"Bearer{TOKEN}"},
    ],
    ids=["missing", "wrong", "no-scheme", "basic", "suffixed", "twice", "truncated", "empty", "no-space"],
)
def test_token_required_on_generating_routes(secured: TestClient, headers: dict[str, str]) -> None:
    for method, path, body in (("POST", "/generate", {"label": 1}), ("POST", "/dataset", {"per_label": 1})):
        response = secured.request(method, path, json=body, headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["field"] == "Authorization"
    assert secured.get("/generate", params={"label": "1"}, headers=headers).status_code == 401


def test_right_token_is_accepted(secured: TestClient) -> None:
    for scheme in ("Bearer", "bearer"):
        headers = {"Authorization": f"{scheme} {TOKEN}"}
        assert secured.post("/generate", json={"label": 1}, headers=headers).status_code == 200
        assert secured.post("/dataset", json={"per_label": 1}, headers=headers).status_code == 200


def test_operations_need_no_token(secured: TestClient) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/v1/models", "/v2/models/digits", "/openapi.json"):
        assert secured.get(path).status_code == 200, path


def test_openapi_declares_bearer_only_when_a_token_is_set(
    secured: TestClient, shared_client: TestClient
) -> None:
    schema = secured.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert schema["paths"]["/generate"]["post"]["security"] == [{"bearerAuth": []}]
    assert "security" not in schema["paths"]["/healthz"]["get"]
    assert "securitySchemes" not in shared_client.get("/openapi.json").json()["components"]


def test_blank_token_means_no_auth(root: Path, open_client) -> None:
    with open_client(root, api_token="  ") as client:
        assert client.post("/generate", json={"label": 1}).status_code == 200
