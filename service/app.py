"""The FastAPI app: runtime, middleware, error handlers and routers put together; nothing else.

``create_app(settings)`` builds one and nothing is loaded until its lifespan starts. ``uvicorn
service.app:app`` works too: ``app`` is built from the environment on first access. Behind a proxy that
strips a path prefix, run ``python -m service`` with ``ROOT_PATH=/api`` (or ``uvicorn --root-path /api``):
the guard decides on the routed path, so the prefix changes nothing about auth and limits.
``python -m service`` adds the connection limits (header cap, header/body/send timeouts) that plain
``uvicorn`` does not have.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles

from service import __version__
from service.config import Settings
from service.http.compression import GZipResponses
from service.http.errors import install_error_handlers
from service.http.middleware import (
    Guard,
    GuardedRoute,
    MetricsMiddleware,
    OverloadShedMiddleware,
    PathOnlyRedirects,
    SecurityHeadersMiddleware,
    is_guarded,
)
from service.http.openapi import document_service
from service.routes import ROUTERS, ui
from service.runtime import Runtime

DESCRIPTION = """Labelled synthetic 28x28 images from a conditional GAN generator (ONNX, onnxruntime).

* Errors are `{"detail": "<field>: <problem>", "field": "<field>"}`. Unknown model: **404**; invalid value
  (unknown label, n out of range, bad format, seed too large): **422**; body over MAX_BODY_BYTES (also
  once decompressed: bodies may be sent with `Content-Encoding: gzip`): **413**; other encodings: **415**;
  overload: **429** with `Retry-After` (queue full) or **503** with `Retry-After` (queued longer than
  QUEUE_TIMEOUT_SECONDS); no model loaded: **503**; bad or missing token: **401**; headers over
  MAX_HEADER_BYTES: **431**; head or body too slow: **408**.
* Seeds: image i of a request uses `seed + i`, so `{seed: s, n: 16}` image k equals `{seed: s + k, n: 1}`.
* PNG grid size: `cols = min(nrow, n)` (nrow defaults to `ceil(sqrt(n))`), `rows = ceil(n / cols)`,
  `width = cols*W + (cols+1)*pad`, `height = rows*H + (rows+1)*pad`; n=16, 28x28, pad 2 -> 122x122.
* `/dataset`: labels in the order given, `per_label` each; image j overall uses `seed + j`.
* Default model: DEFAULT_MODEL, else the one model name MODELS_DIR serves, else (none there) the bundled
  digits model; with several names in MODELS_DIR, name one. Every worker derives the same one.
* Models: each name keeps its newest MODEL_VERSIONS (2) versions that pass their checks loaded, from
  MODELS_DIR and the bundled models (at equal version numbers MODELS_DIR wins); `version` in a body or
  query (or the `/v2` version path) pins one, and the newest serves otherwise. New versions are picked up
  while serving (every RELOAD_INTERVAL s), bad ones are refused and the loaded ones keep serving. A
  version that is not loaded is a 404 listing the loaded ones.
* `/v2`: the Open Inference Protocol (KServe v2), inference included, JSON or binary tensors, with the
  model configuration, statistics and repository index extensions; its errors are
  `{"error": "<field>: <problem>"}`. The same protocol over gRPC listens on GRPC_PORT (8001).
* JSON answers are gzip-compressed for clients that send `Accept-Encoding: gzip`.
"""

#: Open Inference Protocol inference routes (templates): their bodies may carry the noise tensor ``z``.
INFER_PATHS = frozenset({"/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"})


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    runtime: Runtime = app.state.runtime
    await runtime.start()
    try:
        yield
    finally:
        await runtime.stop()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    logging.getLogger("service").setLevel(settings.log_level.upper())
    # /docs is served from local files (service.routes.docs); FastAPI's own would load Swagger UI from a CDN.
    app = FastAPI(
        title="cgan-synth",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.runtime = runtime = Runtime(settings)

    token = settings.api_token.get_secret_value() if settings.api_token else None
    app.router.route_class = GuardedRoute  # routes added on the app itself are guarded like the routers'
    app.state.guard = Guard(
        runtime.limiter,  # the gRPC side (service.grpc) admits through the same one
        runtime.metrics,
        token=token,
        max_body_bytes=settings.max_body_bytes,
        retry_after=settings.retry_after_seconds,
        queue_timeout=settings.queue_timeout_seconds,
        # An inference body carries the noise tensor too: MAX_N x latent_dim floats, far over MAX_BODY_BYTES.
        body_limits={path: (settings.max_infer_body_bytes, "MAX_INFER_BODY_BYTES") for path in INFER_PATHS},
        body_budget=settings.body_budget_bytes,
    )
    app.add_middleware(OverloadShedMiddleware, app.state.guard)
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(PathOnlyRedirects)  # Starlette's trailing-slash redirects name the Host header's host
    app.add_middleware(GZipResponses)  # for clients that send Accept-Encoding: gzip (JSON answers)
    app.add_middleware(MetricsMiddleware, runtime.metrics)
    install_error_handlers(app)

    for router in ROUTERS:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=ui.STATIC_DIR, check_dir=False), name="static")

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            guarded = [
                (route.path, method)
                for router in ROUTERS
                for route in router.routes
                if isinstance(route, APIRoute) and is_guarded(route)
                for method in route.methods
            ]
            app.openapi_schema = document_service(FastAPI.openapi(app), settings, guarded)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


_app: FastAPI | None = None


def __getattr__(name: str) -> FastAPI:
    # `uvicorn service.app:app` resolves this on startup; importing the module alone builds nothing.
    global _app
    if name != "app":
        raise AttributeError(name)
    if _app is None:
        _app = create_app()
    return _app
