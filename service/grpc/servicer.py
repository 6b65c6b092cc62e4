"""``inference.GRPCInferenceService``: one thin method per RPC over the data plane, each behind what the HTTP
guard does for its HTTP twin (see :mod:`service.grpc` for the status codes and the metrics labels).

ModelInfer and RepositoryIndex are guarded like their HTTP routes (POSTs): the bearer token, then a slot of
the process's admission limiter (the very instance the HTTP guard uses). The health, metadata,
configuration and statistics RPCs are open, like their HTTP GETs.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from service import dataplane
from service.admission import bearer_matches
from service.dataplane import describe
from service.errors import ModelNotFound, RequestError
from service.grpc import codec
from service.grpc.proto import grpc_service_pb2 as pb
from service.grpc.proto import grpc_service_pb2_grpc as pb_grpc
from service.runtime import Runtime

log = logging.getLogger(__name__)

SERVICE = "inference.GRPCInferenceService"
#: The ``method`` label of gRPC requests in the HTTP request metrics.
METHOD_LABEL = "GRPC"
#: The status counted for an RPC its client cancelled (the HTTP guard's 499).
CLIENT_CLOSED = 499
#: HTTP-equivalent status -> gRPC status code.
CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
}

_Response = TypeVar("_Response")
_Handler = Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[_Response]]


class Refused(RequestError):
    """A refusal of the guard (token, admission); ``status`` is the HTTP-equivalent code."""

    def __init__(self, status: int, detail: str, field: str | None = None, retry_after: int | None = None):
        super().__init__(detail, field, retry_after)
        self.status = status


def _rpc(guarded: bool = False) -> Callable[[_Handler], _Handler]:
    """Run an RPC method through :meth:`InferenceServicer._call` (token and admission when ``guarded``,
    errors as status codes, the request metrics)."""

    def wrap(method: _Handler) -> _Handler:
        route = f"/{SERVICE}/{method.__name__}"

        @functools.wraps(method)
        async def handler(self: InferenceServicer, request: Any, context: grpc.aio.ServicerContext) -> Any:
            return await self._call(route, guarded, method, request, context)

        return handler

    return wrap


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        settings = runtime.settings
        self.token = settings.api_token.get_secret_value().encode() if settings.api_token else None
        self.retry_after = settings.retry_after_seconds
        self.queue_timeout = settings.queue_timeout_seconds or None
        self._children: dict[tuple[str, int], tuple] = {}

    # --- health and metadata (open) ----------------------------------------------------------------

    @_rpc()
    async def ServerLive(self, request: pb.ServerLiveRequest, context: Any) -> pb.ServerLiveResponse:  # noqa: N802
        return pb.ServerLiveResponse(live=True)

    @_rpc()
    async def ServerReady(self, request: pb.ServerReadyRequest, context: Any) -> pb.ServerReadyResponse:  # noqa: N802
        return pb.ServerReadyResponse(ready=self.runtime.readiness()[0])

    @_rpc()
    async def ModelReady(self, request: pb.ModelReadyRequest, context: Any) -> pb.ModelReadyResponse:  # noqa: N802
        """Loaded and warmed: ready; not loaded (an unknown name or version): not ready, as Triton answers."""
        name, version = codec.model_name(request.name), codec.model_version(request.version)
        try:
            dataplane.served_model(self.runtime, name, version)
        except ModelNotFound:
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=True)

    @_rpc()
    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: Any
    ) -> pb.ServerMetadataResponse:  # noqa: N802
        return codec.server_metadata(describe.server())

    @_rpc()
    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Any) -> pb.ModelMetadataResponse:  # noqa: N802
        name, version = codec.model_name(request.name), codec.model_version(request.version)
        return codec.model_metadata(describe.model_metadata(self.runtime, name, version))

    # --- the extensions -----------------------------------------------------------------------------

    @_rpc()
    async def ModelConfig(self, request: pb.ModelConfigRequest, context: Any) -> pb.ModelConfigResponse:  # noqa: N802
        name, version = codec.model_name(request.name), codec.model_version(request.version)
        return codec.model_config(describe.model_config(self.runtime, name, version))

    @_rpc()
    async def ModelStatistics(  # noqa: N802
        self, request: pb.ModelStatisticsRequest, context: Any
    ) -> pb.ModelStatisticsResponse:
        """Every loaded model version's statistics (no name), a model's (no version), or one version's."""
        name = codec.model_name(request.name) if request.name else None
        version = codec.model_version(request.version)
        if name is None and version is not None:
            raise RequestError("version: give the model's name with a version", "version")
        return codec.statistics(describe.statistics(self.runtime, name, version))

    @_rpc(guarded=True)
    async def RepositoryIndex(  # noqa: N802
        self, request: pb.RepositoryIndexRequest, context: Any
    ) -> pb.RepositoryIndexResponse:
        if request.repository_name:
            detail = "repository_name: this server has one model repository; leave the name empty"
            raise RequestError(detail, "repository_name")
        return codec.repository_index(describe.repository_index(self.runtime, ready_only=request.ready))

    # --- inference ----------------------------------------------------------------------------------

    @_rpc(guarded=True)
    async def ModelInfer(self, request: pb.ModelInferRequest, context: Any) -> pb.ModelInferResponse:  # noqa: N802
        """The HTTP inference route's path: the request's tensors -> the data plane (batched with /generate
        and HTTP inference) -> the images as ``raw_output_contents``."""
        tensors = codec.infer_request(request)
        result = await dataplane.tensors(self.runtime, tensors)
        return codec.infer_response(result.model, result.seed, request.id, len(tensors.labels), result.body)

    # --- the guard ----------------------------------------------------------------------------------

    async def _call(
        self,
        route: str,
        guarded: bool,
        method: _Handler,
        request: Any,
        context: grpc.aio.ServicerContext,
    ) -> Any:
        metrics = self.runtime.metrics
        start = time.perf_counter()
        status = 200
        admitted = False
        metrics.in_flight.inc()
        try:
            if guarded:
                self._authorize(context)
                admitted = await self._admit()
            return await method(self, request, context)
        except RequestError as e:
            status = e.status
            trailing = () if e.retry_after is None else (("retry-after", str(e.retry_after)),)
            await context.abort(CODES.get(e.status, grpc.StatusCode.INVALID_ARGUMENT), e.detail, trailing)
        except asyncio.CancelledError:
            status = CLIENT_CLOSED  # the client cancelled (or its deadline passed): nothing was answered
            metrics.rejected.labels("client_closed").inc()
            raise
        except Exception as e:
            if isinstance(e, grpc.aio.AbortError):
                raise
            status = 500
            log.exception("unhandled %s in %s", type(e).__name__, route)
            await context.abort(grpc.StatusCode.INTERNAL, "internal server error")
        finally:
            if admitted:
                self.runtime.limiter.release()
            metrics.in_flight.dec()
            counter, histogram = self._child(route, status)
            counter.inc()
            histogram.observe(time.perf_counter() - start)

    def _authorize(self, context: grpc.aio.ServicerContext) -> None:
        if self.token is None:
            return
        authorization = b""
        for key, value in context.invocation_metadata() or ():
            if key == "authorization":
                authorization = value.encode() if isinstance(value, str) else value
        if not bearer_matches(authorization, self.token):
            raise Refused(401, "authorization: a valid bearer token is required", "authorization")

    async def _admit(self) -> bool:
        """A slot of the shared limiter, or a refusal: RESOURCE_EXHAUSTED when the queue is full too,
        UNAVAILABLE after QUEUE_TIMEOUT_SECONDS queued; both with the retry hint."""
        limiter, metrics = self.runtime.limiter, self.runtime.metrics
        admitted = limiter.try_acquire()
        if admitted is False:
            metrics.rejected.labels("overload").inc()
            detail = "overloaded: MAX_CONCURRENCY requests running and MAX_QUEUE waiting; retry later"
            raise Refused(429, detail, retry_after=self.retry_after)
        if admitted is None:
            try:
                await limiter.wait(self.queue_timeout)
            except TimeoutError:
                metrics.rejected.labels("queue_timeout").inc()
                timeout = self.queue_timeout
                detail = f"overloaded: queued longer than QUEUE_TIMEOUT_SECONDS ({timeout}s); retry later"
                raise Refused(503, detail, retry_after=self.retry_after) from None
        return True

    def _child(self, route: str, status: int) -> tuple:
        key = (route, status)
        child = self._children.get(key)
        if child is None:
            metrics = self.runtime.metrics
            child = (
                metrics.requests.labels(route, METHOD_LABEL, str(status)),
                metrics.request_seconds.labels(route, METHOD_LABEL),
            )
            self._children[key] = child
        return child
