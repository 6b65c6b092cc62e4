"""One service process under uvicorn, with a drain-then-stop shutdown (``python -m service`` runs one, or
one per worker: service.workers), and the Open Inference Protocol over gRPC beside it on GRPC_PORT
(:mod:`service.grpc`), on the same event loop, started once the lifespan has loaded the models.

On SIGTERM or SIGINT the service first answers /readyz 503 (and gRPC ServerReady false) for
SHUTDOWN_DRAIN_SECONDS while still serving, so load balancers stop sending traffic; then uvicorn stops
accepting connections and gRPC stops accepting RPCs, in-flight requests of both get up to
SHUTDOWN_GRACE_SECONDS, the lifespan shutdown runs once both are done, and the process exits 0. Blocking
work still running near the end of the grace period (a filtered /dataset's pick) is halted just before
uvicorn cancels its request, so it answers 503 instead of being cut off. A second signal skips the drain; a
second SIGINT also skips the grace period. A worker whose supervisor is gone (killed) drains and stops as on
SIGTERM, so it never keeps the port alone.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from types import FrameType
from typing import TYPE_CHECKING

import uvicorn

from service.config import Settings
from service.http.connections import limited_protocol

if TYPE_CHECKING:
    from service.grpc.server import GrpcServer
    from service.runtime import Runtime

log = logging.getLogger("service")

#: Seconds before the end of the grace period that blocking work is halted (``Runtime.halting``): time for
#: it to end its batch and answer 503 before uvicorn cancels whatever request is left.
HALT_BEFORE_CANCEL = 0.5


class DrainingServer(uvicorn.Server):
    def __init__(
        self,
        config: uvicorn.Config,
        runtime: Runtime,
        drain_seconds: float,
        supervisor: int | None = None,
        grpc_port: int = 0,
    ) -> None:
        super().__init__(config)
        self.runtime = runtime
        self.drain_seconds = drain_seconds
        #: GRPC_PORT (0: no gRPC), on the HTTP server's host; the server once started.
        self.grpc_port = grpc_port
        self.grpc: GrpcServer | None = None
        #: Set when the gRPC server could not start: the process exits non-zero (see :func:`run`).
        self.failed = False
        #: The supervisor's pid for a worker; when the parent is no longer it, the supervisor is gone.
        self.supervisor = supervisor
        self._stop_at: float | None = None
        self._published = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._stop_at is None and sig in (signal.SIGTERM, signal.SIGINT):
            # Not recorded as a captured signal: uvicorn would re-raise it after shutdown and the exit
            # status would say "killed" instead of 0. Only a flag here: this runs as a signal handler,
            # between two bytecodes of whatever held a lock (a metric's), so publishing waits for on_tick.
            self.runtime.shutting_down = True
            self._stop_at = time.monotonic() + self.drain_seconds
            log.info("signal %d: not ready; draining for %.1fs before shutdown", sig, self.drain_seconds)
            return
        if self._stop_at is not None and not self.should_exit:
            self.should_exit = True  # a second signal: stop draining now, shut down gracefully
            return
        super().handle_exit(sig, frame)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.grpc_port or self.should_exit:
            return
        from service.grpc.server import GrpcServer  # here: only a process that serves gRPC imports grpc

        server = GrpcServer(self.runtime)
        try:
            await server.start(self.config.host, self.grpc_port)
        except OSError as e:
            log.error("%s", e)
            self.failed = self.should_exit = True
            return
        self.grpc = server

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's shutdown, with gRPC drained beside HTTP (the same grace) and the lifespan shutdown
        (which stops the batcher) only once both are done."""
        grace = self.config.timeout_graceful_shutdown
        if self.force_exit or grace is not None:
            delay = 0.0 if self.force_exit else max(0.0, grace - HALT_BEFORE_CANCEL)  # type: ignore[operator]
            asyncio.get_running_loop().call_later(delay, self.runtime.halting.set)
        server, self.grpc = self.grpc, None
        if server is None:
            await super().shutdown(sockets)
            return
        stopping = asyncio.ensure_future(
            server.stop(0 if self.force_exit else self.config.timeout_graceful_shutdown)
        )
        lifespan_shutdown = self.lifespan.shutdown

        async def after_grpc() -> None:
            await stopping
            await lifespan_shutdown()

        self.lifespan.shutdown = after_grpc  # type: ignore[method-assign]
        try:
            await super().shutdown(sockets)
        finally:
            await stopping

    async def on_tick(self, counter: int) -> bool:
        if self.supervisor is not None and self._stop_at is None and os.getppid() != self.supervisor:
            log.warning("the supervisor (pid %d) is gone; stopping", self.supervisor)
            self.handle_exit(signal.SIGTERM, None)
        if self._stop_at is not None and not self._published:
            self.runtime.begin_shutdown()  # cgan_ready 0, now that no lock can be held under us
            self._published = True
        if self._stop_at is not None and time.monotonic() >= self._stop_at:
            self.should_exit = True
        return await super().on_tick(counter)


#: How the service runs under uvicorn. bench/ serves its floor and naive peer with these too, so a
#: comparison never measures a difference in server settings.
SERVER_OPTIONS = {
    "loop": "uvloop",
    "http": "httptools",
    "lifespan": "on",
    "access_log": False,  # per-request log lines cost more than a small /generate; /metrics counts requests
    "server_header": False,
}


def configure_logging(settings: Settings, prefix: str = "") -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format=f"%(asctime)s %(levelname)s {prefix}%(name)s: %(message)s",
    )


def build_server(settings: Settings, host: str, port: int, supervisor: int | None = None) -> DrainingServer:
    """The app under uvicorn as ``python -m service`` runs it; ``run()`` it (``sockets=`` in a worker)."""
    from service.app import create_app  # here: a supervisor never builds the app, so never imports it

    app = create_app(settings)
    # httptools with the connection limits it lacks (header cap, header/body/send timeouts).
    protocol = limited_protocol(
        max_header_bytes=settings.max_header_bytes,
        header_timeout=settings.header_timeout_seconds,
        body_timeout=settings.body_timeout_seconds,
        send_timeout=settings.send_timeout_seconds,
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,  # keep the logging set up by configure_logging
        log_level=settings.log_level,
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,
        root_path=settings.root_path,
        h11_max_incomplete_event_size=settings.max_header_bytes,  # in case someone swaps in h11
        **{**SERVER_OPTIONS, "http": protocol},
    )
    return DrainingServer(
        config, app.state.runtime, settings.shutdown_drain_seconds, supervisor, settings.grpc_port
    )


def run(server: DrainingServer, sock: socket.socket) -> int:
    """Serve on ``sock`` until stopped; the exit status: 0, or 3 when gRPC could not start (uvicorn's own
    status for a failed startup)."""
    server.run(sockets=[sock])
    return 3 if server.failed else 0
