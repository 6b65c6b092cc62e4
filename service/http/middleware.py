"""Pure ASGI middleware (no BaseHTTPMiddleware: it costs a task and a copy per request on the hot path):
request metrics on every route, browser-facing security headers on every response; and the guard (token,
body size, concurrency, queue time, client disconnects) in front of every route that does work.

The guard is enforced *per route*, after routing, never by matching the raw path: :class:`GuardedRoute`
(the ``route_class`` of every router and of the app) runs it in its ``handle``, i.e. exactly when the
router has picked that route, however the request spelled its path (``--root-path`` prefixes,
percent-encoding, HEAD for GET, ...). Which routes are guarded is :func:`is_guarded`:

* an endpoint marked with :func:`guarded` (or :func:`open_route`) is guarded (or open), as marked;
* otherwise every route that accepts a method other than GET/HEAD is guarded: anything that takes a body
  does work. A new ``POST /v2/models/{name}/infer`` on a router built with ``route_class=GuardedRoute``
  is behind the token, the body cap and the limiter without anyone remembering to add it; mark a GET
  route that does work (``GET /generate``) ``@guarded``. tests/service/test_guard.py fails for a router
  that is not built with ``GuardedRoute``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

from fastapi.routing import APIRoute
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.admission import BodyBudget, ConcurrencyLimiter, Reservation, bearer_matches
from service.errors import RequestError
from service.http.compression import inflate
from service.http.errors import error_response, is_oip
from service.metrics import Metrics

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_UNMATCHED = "<unmatched>"
_GUARD_ATTR = "__cgan_guarded__"
#: The status counted for a request whose client left before its answer (nginx's "client closed request").
CLIENT_CLOSED = 499
#: Scope key through which the guard tells the metrics middleware that the client left.
_OUTCOME = "cgan.outcome"
#: What GuardMiddleware._body answers instead of a body (compared by identity).
_TOO_LARGE = b"<too large>"
_LEFT = b"<client left>"
_OVER_BUDGET = b"<over budget>"
#: Digits of a Content-Length worth reading: more would be over any body limit (and int() of thousands
#: of digits is slow, then refused).
_LENGTH_DIGITS = 18

_F = TypeVar("_F", bound=Callable[..., Any])


def guarded(endpoint: _F) -> _F:
    """Mark a route's endpoint as guarded (token, body cap, concurrency limit), whatever its methods."""
    setattr(endpoint, _GUARD_ATTR, True)
    return endpoint


def open_route(endpoint: _F) -> _F:
    """Mark a route's endpoint as open although it takes a body (none does today)."""
    setattr(endpoint, _GUARD_ATTR, False)
    return endpoint


def is_guarded(route: BaseRoute) -> bool:
    marked = getattr(getattr(route, "endpoint", None), _GUARD_ATTR, None)
    if marked is not None:
        return marked
    return bool(set(getattr(route, "methods", None) or ()) - {"GET", "HEAD"})


class MetricsMiddleware:
    """Counts and times every HTTP request by route template (never the raw path: that is unbounded)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self._children: dict[tuple[str, str, int], tuple] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0

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
            # No response started: the guard says whether the client left (499); anything else failed.
            status = status or scope.get(_OUTCOME, 500)
            counter, histogram = self._child(scope, status)
            counter.inc()
            histogram.observe(time.perf_counter() - start)

    def _child(self, scope: Scope, status: int) -> tuple:
        # The guard runs after routing, so its refusals (401, 413, 429) carry their route label too.
        path = getattr(scope.get("route"), "path", None) or _UNMATCHED
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


class GuardedRoute(APIRoute):
    """An APIRoute that runs the app's :class:`Guard` (``app.state.guard``) before itself when
    :func:`is_guarded`; the ``route_class`` of every router."""

    _guarded: bool | None = None

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._guarded is None:
            self._guarded = is_guarded(self)  # decided once the endpoint is final
        guard: Guard | None = getattr(scope["app"].state, "guard", None) if self._guarded else None
        if guard is None:
            await super().handle(scope, receive, send)
        else:
            await guard(scope, receive, send, super().handle)


class Guard:
    """What stands before the guarded routes (see the module docstring), cheapest refusal first: the bearer
    token (401), the body size (413, declared or chunked; a gzip or deflate body inflated within the same
    limit: :mod:`service.http.compression`), the process's body budget (429 with Retry-After once
    BODY_BUDGET_BYTES of bodies are held: :class:`service.admission.BodyBudget`; reserved before the body is
    read, released when the request ends), then the concurrency limit (429 with Retry-After
    when the queue is full, 503 with Retry-After after QUEUE_TIMEOUT_SECONDS in it). From the end of the
    body on, a client that disconnects cancels its request (counted as 499): queued work it asked for is
    never computed. Other routes (health, metrics, models, docs) bypass all of it. ``body_limits`` gives a
    route (by template) its own ``(bytes, setting name)`` instead of MAX_BODY_BYTES; refusals on Open
    Inference Protocol routes use its ``{"error": ...}`` body.
    """

    def __init__(
        self,
        limiter: ConcurrencyLimiter,
        metrics: Metrics,
        *,
        token: str | None,
        max_body_bytes: int,
        retry_after: int,
        queue_timeout: float | None = None,
        body_limits: Mapping[str, tuple[int, str]] | None = None,
        body_budget: int,
    ) -> None:
        self.limiter = limiter
        self.budget = BodyBudget(body_budget, small=max_body_bytes)
        self.body_limits = dict(body_limits or {})
        self.metrics = metrics
        self.token = token.encode() if token else None
        self.max_body_bytes = max_body_bytes
        self.retry_after = str(retry_after)
        self.queue_timeout = queue_timeout or None
        #: (method, path below root_path) -> guarded route, as the router routed it: what
        #: :class:`OverloadShedMiddleware` may refuse before routing while the limiter is full.
        self.routed: dict[tuple[str, str], Any] = {}
        # Built once: under overload most requests end here, and a Response is a stateless ASGI app.
        overloaded = "overloaded: MAX_CONCURRENCY requests running and MAX_QUEUE waiting; retry later"
        queued = f"overloaded: queued longer than QUEUE_TIMEOUT_SECONDS ({queue_timeout}s); retry later"
        retry = {"Retry-After": self.retry_after}
        self.overloaded, self.overloaded_oip = (
            error_response(429, overloaded, None, retry, oip=oip) for oip in (False, True)
        )
        self.queue_timed_out, self.queue_timed_out_oip = (
            error_response(503, queued, None, retry, oip=oip) for oip in (False, True)
        )
        held = (
            f"body: BODY_BUDGET_BYTES ({self.budget.limit} bytes) of request bodies are being received or "
            "served by this process; retry later"
        )
        close = {**retry, "Connection": "close"}  # the rest of the body is never read
        self.over_budget, self.over_budget_oip = (
            error_response(429, held, "body", close, oip=oip) for oip in (False, True)
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send, app: ASGIApp) -> None:
        """Refuse the request, or run ``app`` (the route) for it."""
        if len(self.routed) < _ROUTED_MAX:
            self.routed[(scope["method"], _route_path(scope))] = scope.get("route")
        template = getattr(scope.get("route"), "path", "")
        oip = is_oip(template)
        max_body, setting = self.body_limits.get(template, (self.max_body_bytes, "MAX_BODY_BYTES"))
        declared = None
        authorization = b""
        encoding = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = value
            elif name == b"authorization":
                authorization = value
            elif name == b"content-encoding":
                encoding = value
        if self.token is not None and not self._authorized(authorization):
            challenge = 'Bearer realm="cgan"' + (', error="invalid_token"' if authorization else "")
            detail = "Authorization: a valid bearer token is required"
            await error_response(401, detail, "Authorization", {"WWW-Authenticate": challenge}, oip=oip)(
                scope, receive, send
            )
            return
        if declared is not None and not (declared.isascii() and declared.isdigit()):
            await error_response(400, "Content-Length: not a number", "Content-Length", oip=oip)(
                scope, receive, send
            )
            return
        if declared is not None and (len(declared) > _LENGTH_DIGITS or int(declared) > max_body):
            await self._too_large(scope, receive, send, max_body, setting, oip)
            return
        reservation = self.budget.reservation()
        try:
            if declared is not None and not reservation.resize(int(declared)):
                await self._refuse_over_budget(scope, receive, send, oip)
                return
            body = await self._body(receive, max_body, reservation)
            if body is _TOO_LARGE:
                await self._too_large(scope, receive, send, max_body, setting, oip)
                return
            if body is _OVER_BUDGET:
                await self._refuse_over_budget(scope, receive, send, oip)
                return
            if body is _LEFT:
                scope[_OUTCOME] = CLIENT_CLOSED  # a partial body, then gone (or timed out): nothing to run
                self.metrics.rejected.labels("client_closed").inc()
                return
            reservation.resize(len(body))  # a body shorter than declared gives the rest back
            if encoding is not None:  # gzip or deflate: inflated here, within the same limit
                # Both copies are held while it inflates: room for the largest inflated one first.
                if not reservation.resize(len(body) + max_body):
                    await self._refuse_over_budget(scope, receive, send, oip)
                    return
                body = await self._inflated(scope, receive, send, body, encoding, max_body, setting, oip)
                if body is None:
                    return
                reservation.resize(len(body))
            await self._serve(scope, receive, send, body, app, oip)
        finally:
            reservation.release()  # served, refused, failed, cancelled or gone: the bytes are free again

    async def _inflated(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        body: bytes,
        encoding: bytes,
        max_body: int,
        setting: str,
        oip: bool,
    ) -> bytes | None:
        """The body decoded (:func:`service.http.compression.inflate`), the route then seeing a plain
        body; or None once the refusal (413 past the limit, 415, 400) is sent."""
        try:
            body = inflate(body, encoding.decode("latin-1"), max_body, setting)
        except RequestError as e:
            if e.status == 413:
                self.metrics.rejected.labels("body_too_large").inc()
            headers = {"Connection": "close"} if e.status == 413 else None
            await error_response(e.status, e.detail, e.field, headers, oip=oip)(scope, receive, send)
            return None
        kept = [(k, v) for k, v in scope["headers"] if k not in (b"content-encoding", b"content-length")]
        scope["headers"] = [*kept, (b"content-length", str(len(body)).encode())]
        return body

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, body: bytes, app: ASGIApp, oip: bool
    ) -> None:
        """Admit and run the request, cancelling it if the client disconnects before its answer is sent."""
        # The common refusal (queue full) costs no task and no closure: it is decided before anything waits.
        admitted = self.limiter.try_acquire()
        if admitted is False:
            self.metrics.rejected.labels("overload").inc()
            await (self.overloaded_oip if oip else self.overloaded)(scope, receive, send)
            return
        task = asyncio.current_task()
        assert task is not None
        disconnected: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        answered = False
        gone = False

        async def watch() -> None:
            nonlocal gone
            while (await receive())["type"] != "http.disconnect":
                pass  # after the whole body only the disconnect is left to hear about
            disconnected.set_result(None)
            if not answered:
                gone = True
                task.cancel()

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.shield(disconnected)
            return {"type": "http.disconnect"}

        async def send_tracked(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                answered = True
            await send(message)

        watcher = asyncio.ensure_future(watch())
        try:
            if admitted is None:
                try:
                    admitted = await self.limiter.wait(self.queue_timeout)
                except TimeoutError:
                    self.metrics.rejected.labels("queue_timeout").inc()
                    await (self.queue_timed_out_oip if oip else self.queue_timed_out)(
                        scope, replay, send_tracked
                    )
                    return
            await app(scope, replay, send_tracked)
        except asyncio.CancelledError:
            # Ours (the client left) or the server's (shutdown); only ours ends here.
            if not gone or task.uncancel() > 0:
                raise
            scope[_OUTCOME] = CLIENT_CLOSED
            self.metrics.rejected.labels("client_closed").inc()
        finally:
            answered = True
            watcher.cancel()
            if admitted:
                self.limiter.release()

    def _authorized(self, authorization: bytes) -> bool:
        return bearer_matches(authorization, self.token or b"")  # constant-time; gRPC's check too

    async def _body(self, receive: Receive, max_body: int, reservation: Reservation) -> bytes:
        """Read the whole (small) body now, so the limit holds for chunked uploads too, its bytes reserved
        as they arrive beyond what was declared; or a sentinel."""
        chunks = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return _LEFT
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > max_body:
                return _TOO_LARGE
            if size > reservation.held and not reservation.resize(size):
                return _OVER_BUDGET
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)

    async def _refuse_over_budget(self, scope: Scope, receive: Receive, send: Send, oip: bool) -> None:
        self.metrics.rejected.labels("body_budget").inc()
        await (self.over_budget_oip if oip else self.over_budget)(scope, receive, send)

    async def _too_large(
        self, scope: Scope, receive: Receive, send: Send, max_body: int, setting: str, oip: bool
    ) -> None:
        self.metrics.rejected.labels("body_too_large").inc()
        detail = f"body: larger than {setting} ({max_body} bytes)"
        await error_response(413, detail, "body", {"Connection": "close"}, oip=oip)(scope, receive, send)


_ROUTED_MAX = 1024


def _route_path(scope: Scope) -> str:
    """The path the router matches: below ``root_path`` (as Starlette's routing computes it)."""
    path, root = scope["path"], scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root) :]
    return path


class OverloadShedMiddleware:
    """Answers 429 before routing (routing costs more than the refusal itself) while the limiter is full,
    but only for a (method, path) the router has already routed to a guarded route. It can only refuse
    earlier what the guard would refuse; it never lets anything through. Under overload an unauthorised
    request to such a path gets 429 rather than 401."""

    def __init__(self, app: ASGIApp, guard: Guard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        guard = self.guard
        if scope["type"] == "http" and guard.limiter.full:
            route = guard.routed.get((scope["method"], _route_path(scope)))
            if route is not None:
                scope["route"] = route  # the metrics label
                guard.metrics.rejected.labels("overload").inc()
                oip = is_oip(getattr(route, "path", ""))
                await (guard.overloaded_oip if oip else guard.overloaded)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def path_only(location: str) -> str:
    """``location`` without its scheme and host (``http://h/a?b`` -> ``/a?b``), its leading slashes and
    backslashes one slash: a browser reads ``//h`` and ``/\\h`` as another host."""
    parts = urlsplit(location)
    path = "/" + parts.path.lstrip("/\\")
    return (
        path + (f"?{parts.query}" if parts.query else "") + (f"#{parts.fragment}" if parts.fragment else "")
    )


class PathOnlyRedirects:
    """Every redirect's ``Location`` made path-only (:func:`path_only`). Starlette builds the one of its
    trailing-slash redirect (``/generate/`` -> 307 ``/generate``) as an absolute URL from the request's Host
    header, which the client chooses (and a cache keyed without it would hand to others)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_path_only(message: Message) -> None:
            if message["type"] == "http.response.start" and 300 <= message["status"] < 400:
                headers = [
                    (
                        name,
                        path_only(value.decode("latin-1")).encode("latin-1")
                        if name == b"location"
                        else value,
                    )
                    for name, value in message.get("headers", ())
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_path_only)


#: For API answers (JSON, images, archives): nothing may load, nothing may frame them.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"


class SecurityHeadersMiddleware:
    """``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY``, ``Referrer-Policy: no-referrer`` and
    a Content-Security-Policy on every response; a route that serves a page sets its own CSP (the
    playground and the docs do), which is kept."""

    _FIXED = (
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
    )
    _FIXED_AND_CSP = (*_FIXED, (b"content-security-policy", API_CSP.encode()))

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                # Starlette's raw headers are lower-case already; a page route sets its own CSP.
                own_csp = any(name == b"content-security-policy" for name, _ in headers)
                headers += self._FIXED if own_csp else self._FIXED_AND_CSP
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
