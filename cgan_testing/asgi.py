"""An HTTP scope for driving an ASGI app by hand, as uvicorn would build it: for tests that feed a body
piece by piece or disconnect at a chosen moment, which a test client cannot."""

from __future__ import annotations

from typing import Any


def post_scope(
    path: str, headers: list[tuple[bytes, bytes]], server: tuple[str, int] = ("127.0.0.1", 80), **extra: Any
) -> dict[str, Any]:
    """The scope of ``POST path`` with these raw ``headers`` from 127.0.0.1; ``extra`` keys added as given."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": server,
        **extra,
    }
