"""``python -m service`` / ``cgan-serve``: run the service under uvicorn with a drain-then-stop shutdown.

On SIGTERM or SIGINT the service first answers /readyz 503 for SHUTDOWN_DRAIN_SECONDS while still serving,
so load balancers stop sending traffic; then uvicorn stops accepting connections, gives in-flight requests
up to SHUTDOWN_GRACE_SECONDS, runs the lifespan shutdown and the process exits 0. A second signal skips
the drain; a second SIGINT also skips the grace period.
"""

from __future__ import annotations

import argparse
import logging
import signal
import time
from types import FrameType

import uvicorn

from service.app import create_app
from service.config import Settings
from service.http.protocol import limited_protocol
from service.runtime import Runtime

log = logging.getLogger("service")


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, runtime: Runtime, drain_seconds: float) -> None:
        super().__init__(config)
        self.runtime = runtime
        self.drain_seconds = drain_seconds
        self._stop_at: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._stop_at is None and sig in (signal.SIGTERM, signal.SIGINT):
            # Not recorded as a captured signal: uvicorn would re-raise it after shutdown and the exit
            # status would say "killed" instead of 0.
            self.runtime.shutting_down = True
            self._stop_at = time.monotonic() + self.drain_seconds
            log.info("signal %d: not ready; draining for %.1fs before shutdown", sig, self.drain_seconds)
            return
        if self._stop_at is not None and not self.should_exit:
            self.should_exit = True  # a second signal: stop draining now, shut down gracefully
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if self._stop_at is not None and time.monotonic() >= self._stop_at:
            self.should_exit = True
        return await super().on_tick(counter)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="cgan-serve", description="Serve conditional-GAN generators over HTTP."
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (0.0.0.0 in a container)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--models-dir", help="overrides MODELS_DIR")
    return parser.parse_args(argv)


#: How the service runs under uvicorn. bench/ serves its floor and naive peer with these too, so a
#: comparison never measures a difference in server settings.
SERVER_OPTIONS = {
    "loop": "uvloop",
    "http": "httptools",
    "lifespan": "on",
    "access_log": False,  # per-request log lines cost more than a small /generate; /metrics counts requests
    "server_header": False,
}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    settings = Settings(**({"models_dir": args.models_dir} if args.models_dir else {}))
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
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
        host=args.host,
        port=args.port,
        log_config=None,  # keep the logging set up above
        log_level=settings.log_level,
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,
        root_path=settings.root_path,
        h11_max_incomplete_event_size=settings.max_header_bytes,  # in case someone swaps in h11
        **{**SERVER_OPTIONS, "http": protocol},
    )
    DrainingServer(config, app.state.runtime, settings.shutdown_drain_seconds).run()


if __name__ == "__main__":
    main()
