"""The playground page at ``/`` (when ``service/static/index.html`` is shipped) and its static files."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from service.http.middleware import GuardedRoute

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

router = APIRouter(include_in_schema=False, route_class=GuardedRoute)

_INLINE = re.compile(rb"<(script|style)>(.*?)</\1>", re.S)


def page_csp(html: bytes) -> str:
    """A CSP that runs exactly the page's own inline ``<script>`` and ``<style>`` blocks (by hash), fetches
    only from this origin (images come back as blob: URLs, which the page may read back) and cannot be
    framed."""
    hashes: dict[bytes, list[str]] = {b"script": [], b"style": []}
    for tag, code in _INLINE.findall(html):
        hashes[tag].append(f"'sha256-{base64.b64encode(hashlib.sha256(code).digest()).decode()}'")
    script = " ".join(hashes[b"script"]) or "'none'"
    style = " ".join(hashes[b"style"]) or "'none'"
    return (
        f"default-src 'none'; script-src {script}; style-src {style}; img-src 'self' blob: data:; "
        "connect-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )


@router.get("/")
async def index(request: Request) -> Response:
    """The playground page, or the API docs when no page is shipped (under ROOT_PATH, behind a proxy)."""
    page = STATIC_DIR / "index.html"
    if page.is_file():
        html = page.read_bytes()
        return Response(html, media_type="text/html", headers={"Content-Security-Policy": page_csp(html)})
    return RedirectResponse(request.scope.get("root_path", "") + "/docs")
