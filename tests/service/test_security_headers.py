"""Browser-facing hardening (issue #17, item 8): nosniff, a CSP with frame-ancestors on every response, and
API docs that load nothing from a CDN (they must work offline). The playground page under its CSP is driven
in Chromium by tests/service/test_playground.py."""

from __future__ import annotations

import base64
import hashlib
import re
import shutil

from fastapi.testclient import TestClient


def test_every_response_carries_nosniff_and_a_csp(shared_client: TestClient) -> None:
    for method, path, body in (
        ("GET", "/", None),
        ("GET", "/readyz", None),
        ("GET", "/metrics", None),
        ("POST", "/generate", {"label": 1}),
        ("POST", "/generate", {"label": 99}),
        ("GET", "/no-such-page", None),
        ("GET", "/docs", None),
    ):
        response = shared_client.request(method, path, json=body)
        headers = response.headers
        assert headers.get("x-content-type-options") == "nosniff", path
        csp = headers.get("content-security-policy", "")
        assert "frame-ancestors 'none'" in csp and "default-src" in csp, (path, csp)
        assert headers.get("x-frame-options") == "DENY", path


def test_playground_csp_allows_exactly_its_inline_code(shared_client: TestClient) -> None:
    page = shared_client.get("/")
    csp = page.headers["content-security-policy"]
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
    for tag in ("script", "style"):
        for code in re.findall(rf"<{tag}>(.*?)</{tag}>", page.text, re.S):
            digest = base64.b64encode(hashlib.sha256(code.encode()).digest()).decode()
            assert f"'sha256-{digest}'" in csp, tag


def test_docs_load_nothing_from_outside(shared_client: TestClient) -> None:
    docs = shared_client.get("/docs")
    assert docs.status_code == 200
    assert not re.search(r"(src|href)=\"(https?:)?//", docs.text), docs.text
    assets = re.findall(r"(?:src|href)=\"([^\"]+)\"", docs.text)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets)
    for asset in assets:
        response = shared_client.get(asset if asset.startswith("/") else f"/{asset}")
        assert response.status_code == 200 and response.content, asset
    csp = docs.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "cdn" not in csp
    assert shared_client.get("/redoc").status_code == 404  # it would load from a CDN


def test_the_docs_work_from_the_assets_the_service_image_keeps(
    shared_client: TestClient, tmp_path, monkeypatch
) -> None:
    # The image build prunes the Swagger Editor (23 MB) from swagger-ui-py; the page must not need it.
    from service.routes import docs as docs_route

    pruned = tmp_path / "static"
    shutil.copytree(docs_route.ASSETS_DIR, pruned)
    before = {p.name for p in pruned.iterdir()}
    freed = docs_route.prune_assets(pruned)
    assert {p.name for p in pruned.iterdir()} == set(docs_route.KEPT) and freed > 20_000_000
    assert "swagger-editor-bundle.js" in before
    monkeypatch.setattr(docs_route, "ASSETS_DIR", pruned)
    page = shared_client.get("/docs")
    for asset in re.findall(r"(?:src|href)=\"([^\"]+)\"", page.text):
        response = shared_client.get(f"/{asset}")
        assert response.status_code == 200 and response.content, asset
