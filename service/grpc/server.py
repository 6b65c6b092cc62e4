"""The gRPC server of one service process: ``grpc.aio`` on the process's own event loop (uvicorn's), so the
servicer awaits the data plane, the batcher and the admission limiter exactly as the HTTP routes do.
:mod:`service.server` starts it once the lifespan has loaded the models and stops it when HTTP stops.

Every worker binds GRPC_PORT with SO_REUSEPORT (grpc's default on Linux), so the kernel spreads gRPC
connections over the workers as it does HTTP ones; ``cgan-serve`` checks the port is free before any worker
starts (:func:`service.workers.probe`). Limits: a message over MAX_INFER_BODY_BYTES is refused by grpc
(RESOURCE_EXHAUSTED), metadata over MAX_HEADER_BYTES too; at most MAX_CONCURRENCY + MAX_QUEUE +
:data:`EXTRA_RPCS` RPCs are read at once per process (more wait in grpc, unread), so the messages held in
memory stay bounded; the extra ones reach the servicer and get the admission limiter's answer at once.
"""

from __future__ import annotations

import logging

import grpc

from service.grpc.proto.grpc_service_pb2_grpc import add_GRPCInferenceServiceServicer_to_server
from service.grpc.servicer import InferenceServicer
from service.runtime import Runtime

log = logging.getLogger("service")

#: RPCs read beyond the admission limiter's capacity: refused at once (or cheap: health, metadata) instead
#: of waiting unseen inside grpc.
EXTRA_RPCS = 16


def address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class GrpcServer:
    """``start()`` on the running loop, ``stop(grace)`` to drain: no new RPCs, in-flight ones get ``grace``
    seconds, then they are cancelled."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.server: grpc.aio.Server | None = None
        self.port: int | None = None

    async def start(self, host: str, port: int) -> int:
        settings = self.runtime.settings
        options = [
            ("grpc.max_receive_message_length", settings.grpc_max_message_bytes),
            ("grpc.max_send_message_length", -1),  # answers are bounded by MAX_N images
            ("grpc.max_metadata_size", settings.max_header_bytes),
            ("grpc.so_reuseport", 1),
        ]
        server = grpc.aio.server(
            options=options,
            maximum_concurrent_rpcs=settings.max_concurrency + settings.max_queue + EXTRA_RPCS,
        )
        add_GRPCInferenceServiceServicer_to_server(InferenceServicer(self.runtime), server)
        try:
            bound = server.add_insecure_port(address(host, port))
        except RuntimeError as e:  # grpc says why only in its own log; the port is what matters here
            raise OSError(f"cannot listen on {address(host, port)} for gRPC (GRPC_PORT): {e}") from None
        if not bound:
            raise OSError(f"cannot listen on {address(host, port)} for gRPC (GRPC_PORT)")
        await server.start()
        self.server, self.port = server, bound
        log.info("Open Inference Protocol over gRPC on %s", address(host, bound))
        return bound

    async def stop(self, grace: float | None) -> None:
        if self.server is not None:
            await self.server.stop(grace)
            self.server = None
