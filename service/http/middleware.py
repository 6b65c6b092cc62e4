"""Pure ASGI middleware (no BaseHTTPMiddleware: it costs a task and a copy per request on the hot path):
request metrics on every route, and the guard (token, body size, concurrency) before the generating ones."""

from __future__ import annotations

import asyncio
import hmac
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.http.errors import error_response, is_oip
from service.metrics import Metrics

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_UNMATCHED = "<unmatched>"


def route_matcher(templates: Iterable[str]) -> Callable[[str], str | None]:
    """Raw path -> the route template it falls under (``{param}`` matches one path segment), or None."""
    exact = {t for t in templates if "{" not in t}
    patterns = [
        (re.compile(re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(t))), t) for t in templates if "{" in t
    ]

    def match(path: str) -> str | None:
        if path in exact:
            return path
        return next((t for pattern, t in patterns if pattern.fullmatch(path)), None)

    return match


class MetricsMiddleware:
    """Counts and times every HTTP request by route template (never the raw path: that is unbounded)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, guarded_paths: frozenset[str]) -> None:
        self.app = app
        self.metrics = metrics
        #: Paths whose requests may be refused before routing (413, 429) and still deserve their own label.
        self.guarded_paths = guarded_paths
        self._guarded = route_matcher(guarded_paths)
        self._children: dict[tuple[str, str, int], tuple] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        start = time.perf_counter()
        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.in_flight.dec()
            counter, histogram = self._child(scope, status)
            counter.inc()
            histogram.observe(time.perf_counter() - start)

    def _child(self, scope: Scope, status: int) -> tuple:
        route = scope.get("route")
        path = getattr(route, "path", None)
        if path is None:
            path = self._guarded(scope["path"]) or _UNMATCHED
        method = scope["method"] if scope["method"] in _METHODS else "OTHER"
        key = (path, method, status)
        child = self._children.get(key)
        if child is None:
            child = (
                self.metrics.requests.labels(path, method, str(status)),
                self.metrics.request_seconds.labels(path, method),
            )
            self._children[key] = child
        return child


class ConcurrencyLimiter:
    """At most ``limit`` holders and ``queue`` waiters (FIFO); beyond that :meth:`acquire` answers False.

    Loop-agnostic (futures are made at wait time), so one app can be served by several event loops in turn.
    """

    def __init__(self, limit: int, queue: int) -> None:
        self.limit = limit
        self.queue = queue
        self.active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self) -> bool:
        if self.active < self.limit and not self._waiters:
            self.active += 1
            return True
        if len(self._waiters) >= self.queue:
            return False
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # release() hands its slot straight to us, so `active` is already counted
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot arrived just as we were cancelled: pass it on
            else:
                self._waiters.remove(waiter)
            raise
        return True

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.active -= 1


class GuardMiddleware:
    """What stands before the generating routes, cheapest refusal first: the bearer token (401), the body
    size (413, declared or chunked), then the concurrency limit (429 with Retry-After). Other paths
    (health, metrics, models, docs) bypass all three. ``paths`` are route templates (``{param}`` is one
    segment); ``body_limits`` gives a route its own ``(bytes, setting name)`` instead of MAX_BODY_BYTES.
    Refusals on Open Inference Protocol paths use its ``{"error": ...}`` body.
    """

    def __init__(
        self,
        app: ASGIApp,
        paths: frozenset[str],
        limiter: ConcurrencyLimiter,
        metrics: Metrics,
        *,
        token: str | None,
        max_body_bytes: int,
        retry_after: int,
        body_limits: Mapping[str, tuple[int, str]] | None = None,
    ) -> None:
        self.app = app
        self.paths = paths
        self._guarded = route_matcher(paths)
        self.body_limits = dict(body_limits or {})
        self.limiter = limiter
        self.metrics = metrics
        self.token = token.encode() if token else None
        self.max_body_bytes = max_body_bytes
        self.retry_after = str(retry_after)
        # Built once: under overload most requests end here, and a Response is a stateless ASGI app.
        overloaded = "overloaded: MAX_CONCURRENCY requests running and MAX_QUEUE waiting; retry later"
        self.overloaded, self.overloaded_oip = (
            error_response(429, overloaded, None, {"Retry-After": self.retry_after}, oip=oip)
            for oip in (False, True)
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self._guarded(scope["path"]) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        oip = is_oip(route)
        max_body, setting = self.body_limits.get(route, (self.max_body_bytes, "MAX_BODY_BYTES"))
        declared = None
        authorization = b""
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = value
            elif name == b"authorization":
                authorization = value
        if self.token is not None and not self._authorized(authorization):
            challenge = 'Bearer realm="cgan"' + (', error="invalid_token"' if authorization else "")
            detail = "Authorization: a valid bearer token is required"
            await error_response(401, detail, "Authorization", {"WWW-Authenticate": challenge}, oip=oip)(
                scope, receive, send
            )
            return
        if scope["method"] in _BODY_METHODS:
            if declared is not None and not declared.isdigit():
                await error_response(400, "Content-Length: not a number", "Content-Length", oip=oip)(
                    scope, receive, send
                )
                return
            if declared is not None and int(declared) > max_body:
                await self._too_large(scope, receive, send, max_body, setting, oip)
                return
            replay = await self._buffered(receive, max_body)
            if replay is None:
                await self._too_large(scope, receive, send, max_body, setting, oip)
                return
            receive = replay
        if not await self.limiter.acquire():
            self.metrics.rejected.labels("overload").inc()
            await (self.overloaded_oip if oip else self.overloaded)(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.limiter.release()

    def _authorized(self, authorization: bytes) -> bool:
        scheme, _, credentials = authorization.partition(b" ")
        # Constant-time, so response timing does not reveal how much of a guessed token matched.
        return scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(), self.token or b"")

    async def _buffered(self, receive: Receive, max_body: int) -> Receive | None:
        """Read the whole (small) body now, so the limit holds for chunked uploads too; replay it after."""
        chunks = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client left; the app will see an empty body and its disconnect
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > max_body:
                return None
            chunks.append(chunk)
            more = message.get("more_body", False)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # after the body, only http.disconnect is left to hear about
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        return replay

    async def _too_large(
        self, scope: Scope, receive: Receive, send: Send, max_body: int, setting: str, oip: bool
    ) -> None:
        self.metrics.rejected.labels("body_too_large").inc()
        detail = f"body: larger than {setting} ({max_body} bytes)"
        await error_response(413, detail, "body", {"Connection": "close"}, oip=oip)(scope, receive, send)
