"""Redirects the service answers (``/generate/`` -> ``/generate``, ``/`` -> ``/docs``) carry a path-only
``Location``: never one built from the request's Host header, which a client (or a cache poisoned by one)
chooses, and never one a browser reads as another host (``//evil.example``)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.http.middleware import PathOnlyRedirects

HOSTILE = {"Host": "evil.example"}


@pytest.fixture(scope="module")
def client(shared_client: TestClient) -> TestClient:
    return TestClient(shared_client.app, follow_redirects=False)


@pytest.mark.parametrize(
    ("method", "path", "location"),
    [
        ("GET", "/healthz/", "/healthz"),
        ("GET", "/docs/", "/docs"),
        ("GET", "/v2/", "/v2"),
        ("POST", "/generate/", "/generate"),
        ("POST", "/v2/models/digits/infer/", "/v2/models/digits/infer"),
        ("GET", "/healthz/?a=1", "/healthz?a=1"),
    ],
)
def test_a_trailing_slash_redirect_is_path_only(
    client: TestClient, method: str, path: str, location: str
) -> None:
    response = client.request(method, path, headers=HOSTILE)
    assert response.status_code == 307, response.text
    assert response.headers["location"] == location


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("http://evil.example//evil.example/x", "/evil.example/x"),
        ("http://evil.example/\\evil.example/x", "/evil.example/x"),
        ("//evil.example/x", "/x"),
        ("https://h/a/b?c=1#d", "/a/b?c=1#d"),
        ("http://h", "/"),
        ("/docs", "/docs"),
    ],
)
def test_a_redirect_never_points_at_another_host(location: str, expected: str) -> None:
    """Made path-only, a path that began with several slashes (or a backslash) would be read by a browser
    as a protocol-relative URL to another host: they collapse to one."""

    async def redirect(scope: Any, receive: Any, send: Any) -> None:
        await send(
            {"type": "http.response.start", "status": 307, "headers": [(b"location", location.encode())]}
        )
        await send({"type": "http.response.body", "body": b""})

    client = TestClient(PathOnlyRedirects(redirect), follow_redirects=False)
    assert client.get("/anything").headers["location"] == expected


def test_a_root_path_prefix_is_kept(open_client, models_dir) -> None:
    with open_client(models_dir, root_path="/api") as app_client:
        client = TestClient(app_client.app, follow_redirects=False, root_path="/api")
        response = client.get("/api/healthz/", headers=HOSTILE)
        assert response.status_code == 307, response.text
        assert response.headers["location"] == "/api/healthz"


def test_the_docs_redirect_keeps_the_root_path(open_client, models_dir, monkeypatch, tmp_path) -> None:
    """``/`` without a shipped page sends the browser to the docs under the proxy's prefix, not the host's
    own ``/docs`` (which behind a proxy that strips ``/api`` is another service's, or nothing)."""
    from service.routes import ui

    monkeypatch.setattr(ui, "STATIC_DIR", tmp_path)  # no index.html
    with open_client(models_dir, root_path="/api") as app_client:
        client = TestClient(app_client.app, follow_redirects=False, root_path="/api")
        response = client.get("/api/", headers=HOSTILE)
        assert response.status_code == 307, response.text
        assert response.headers["location"] == "/api/docs"
    with open_client(models_dir) as app_client:
        response = TestClient(app_client.app, follow_redirects=False).get("/")
        assert response.headers["location"] == "/docs"
