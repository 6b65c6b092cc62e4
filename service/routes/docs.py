"""``/docs``: Swagger UI from files installed with the service (the ``swagger-ui-py`` package), never a CDN,
so the docs work on an offline network and run no third-party script. URLs are relative to the page, so
they also work behind a path prefix."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse, Response

from service.http.errors import error_response
from service.http.middleware import GuardedRoute

# Located, not imported: importing swagger_ui pulls in jinja2 and friends (~0.1 s of startup) for nothing.
_PACKAGE = importlib.util.find_spec("swagger_ui")
assert _PACKAGE is not None and _PACKAGE.submodule_search_locations, "swagger-ui-py is not installed"
ASSETS_DIR = Path(next(iter(_PACKAGE.submodule_search_locations))) / "static"
INIT_SCRIPT = Path(__file__).resolve().parent.parent / "static" / "docs-init.js"
#: The only files served from ASSETS_DIR (it also holds the Swagger *Editor*, which the docs do not need).
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}
#: Kept by prune_assets beside ASSETS: the assets' licence travels with them.
KEPT = frozenset(ASSETS) | {"LICENSE"}
#: Swagger UI sets inline styles and uses data: URIs for its icons; scripts only from here.
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>cgan-synth API</title>
<link rel="stylesheet" href="docs/swagger-ui.css">
<link rel="icon" type="image/png" href="docs/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/swagger-ui-bundle.js"></script>
<script src="docs/init.js"></script>
</body>
</html>
"""

router = APIRouter(include_in_schema=False, route_class=GuardedRoute)


@router.get("/docs")
async def docs() -> HTMLResponse:
    """The Swagger UI page for ``openapi.json``."""
    return HTMLResponse(PAGE, headers={"Content-Security-Policy": DOCS_CSP, "Cache-Control": "no-cache"})


@router.get("/docs/{asset}")
async def docs_asset(asset: str) -> Response:
    if asset == "init.js":
        return FileResponse(INIT_SCRIPT, media_type="text/javascript")
    if asset not in ASSETS:
        return error_response(404, f"asset: {asset!r} is not one of the docs files", "asset")
    cache = {"Cache-Control": "max-age=86400"}
    return FileResponse(ASSETS_DIR / asset, media_type=ASSETS[asset], headers=cache)


def prune_assets(directory: Path = ASSETS_DIR) -> int:
    """Delete what the docs never serve from ``directory`` (the Swagger Editor and source maps, 23 of its
    25 MB); the service image calls this at build time. Returns the bytes freed."""
    freed = 0
    for path in directory.iterdir():
        if path.is_file() and path.name not in KEPT:
            freed += path.stat().st_size
            path.unlink()
    return freed
