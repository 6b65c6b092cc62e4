"""The Open Inference Protocol (KServe v2) over gRPC: Triton's ``inference.GRPCInferenceService``, on its own
port (GRPC_PORT, 8001; 0 turns it off), in every process that serves HTTP, through the same data plane.

* :mod:`.proto`: the service definition (a subset of Triton's ``grpc_service.proto`` and
  ``model_config.proto``, names and field numbers unchanged) and its generated stubs.
* :mod:`.codec`: ``ModelInferRequest`` -> the data plane's :class:`~service.requests.TensorRequest`, and
  the images -> ``ModelInferResponse`` (``raw_input_contents`` or typed ``contents`` in; always
  ``raw_output_contents`` out); the other messages from :mod:`service.dataplane.describe`'s answers.
* :mod:`.servicer`: one thin method per RPC, behind what the HTTP guard does for HTTP: the token (an
  ``authorization: Bearer <token>`` metadata entry, compared whole in constant time), the same admission
  limiter instance as HTTP (``Runtime.limiter``), and the same request metrics.
* :mod:`.server`: a ``grpc.aio`` server on the process's event loop, started and stopped with the HTTP
  server (:mod:`service.server`); workers share the port through SO_REUSEPORT.

Status codes (what an HTTP client would get -> gRPC): 401 -> UNAUTHENTICATED, 404 (unknown model or
version) -> NOT_FOUND, 400/415/422 (bad input, the message names the tensor or field) -> INVALID_ARGUMENT,
429 (MAX_CONCURRENCY running and MAX_QUEUE waiting) -> RESOURCE_EXHAUSTED, 503 (not ready, or queued past
QUEUE_TIMEOUT_SECONDS) -> UNAVAILABLE, the last two with a ``retry-after`` trailing metadata entry
(seconds). A message over MAX_INFER_BODY_BYTES is refused by grpc itself (RESOURCE_EXHAUSTED, no retry
hint). Metrics: each RPC is counted in ``cgan_http_requests_total`` and timed in
``cgan_http_request_duration_seconds`` like an HTTP request, with ``route`` its gRPC method path
(``/inference.GRPCInferenceService/ModelInfer``), ``method`` ``GRPC`` and ``status`` the HTTP-equivalent
code above (200, 401, 404, 422, 429, 499 for a client that cancelled, 500, 503), so the dashboards' error
and overload panels count both protocols the same way.
"""
