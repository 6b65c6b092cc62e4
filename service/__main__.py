"""``python -m service`` / ``cgan-serve``: the service on one port, in one process or in WORKERS.

One process (WORKERS=1) runs the app under uvicorn here (service.server); more are started and supervised
by service.workers. Either way SIGTERM drains, then stops (service.server says how).
"""

from __future__ import annotations

import argparse
import contextlib
import sys

from pydantic import ValidationError

from service.config import Settings
from service.metrics import private_dir
from service.server import build_server, configure_logging, run
from service.workers import Supervisor, bind, probe


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # One line, like every other refusal of ours (argparse would print the whole usage first).
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = _Parser(
        prog="cgan-serve",
        description="Serve conditional-GAN generators over HTTP, and the Open Inference Protocol over gRPC "
        "too (GRPC_PORT, 8001; 0: off).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (0.0.0.0 in a container)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port, 0..65535 (0: any free one)")
    parser.add_argument("--models-dir", help="overrides MODELS_DIR")
    parser.add_argument(
        "--workers", type=int, help="overrides WORKERS: processes sharing the port (0: one per core)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not 0 <= args.port <= 65535:
        sys.exit(f"cgan-serve: error: --port must be 0..65535, got {args.port}")
    overrides = {"models_dir": args.models_dir, "workers": args.workers}
    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as e:
        problem = e.errors()[0]
        where = ".".join(str(part) for part in problem["loc"])
        sys.exit(f"cgan-serve: {where.upper()}: {problem['msg']}")
    try:  # before any model loads: a host or port that cannot be had is one line, at once
        if settings.worker_count == 1:
            sock = bind(args.host, args.port)
        else:
            sock = Supervisor.reserve(settings, args.host, args.port)
    except OSError as e:  # socket.gaierror (an unknown host) included
        sys.exit(f"cgan-serve: error: cannot listen on {args.host}:{args.port}: {e.strerror or e}")
    if settings.grpc_port:
        try:  # the same for gRPC's port, which every worker binds (SO_REUSEPORT) once its models load
            probe(args.host, settings.grpc_port)
        except OSError as e:
            where = f"{args.host}:{settings.grpc_port}"
            sys.exit(f"cgan-serve: error: cannot listen on {where} (GRPC_PORT): {e.strerror or e}")
    if settings.worker_count == 1:
        configure_logging(settings)
        with contextlib.ExitStack() as stack:
            try:  # given PROMETHEUS_MULTIPROC_DIR, one of its own inside it (service.metrics)
                stack.enter_context(private_dir(always=False))
            except OSError as e:
                where = "PROMETHEUS_MULTIPROC_DIR"
                sys.exit(f"cgan-serve: error: cannot make a metrics directory in {where}: {e.strerror or e}")
            status = run(build_server(settings, args.host, args.port), sock)
        sys.exit(status)
    else:
        sys.exit(Supervisor(settings, args.host, args.port, sock).run())


if __name__ == "__main__":
    main()
