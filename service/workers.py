"""WORKERS processes on one port: what ``python -m service`` runs when WORKERS is not 1.

One process cannot keep two cores busy once a request's HTTP and encoding (Python, one GIL) cost more
than its model run. The supervisor holds the port, starts the workers (each builds the whole app from its
share of the settings, ``Settings.for_worker``) and looks after them. Each worker listens on a socket of its
own bound with SO_REUSEPORT, so the kernel spreads connections over the workers by a hash of their
addresses: 32 keep-alive connections opened at once, or a burst of short ones, land on every worker (with
one shared socket, whichever worker woke first took most of them and kept their load). REUSE_PORT=0 goes
back to one socket shared by all. The supervisor itself binds the port without listening: the address is
checked (and a port 0 chosen) before any worker starts, and no connection ever waits on a socket nobody
accepts on.

* SIGTERM or SIGINT is passed on to every worker, which drains and stops like a lone process
  (service.server); a second signal is passed on too. The supervisor exits once they all have: 0, or 1
  when one of them failed.
* A worker that dies while the service is not stopping is replaced, RESTART_DELAY later, so one that
  cannot start does not spin.
* Metrics: the workers share a directory of this service's own (service.metrics.private_dir: made inside
  PROMETHEUS_MULTIPROC_DIR when the operator set one, else a temporary one; removed at exit) so that a
  scrape sees them all, and only them; a dead worker's live gauges are dropped.

Workers run in their own process group, so a terminal's Ctrl-C reaches them once (through here), and each
stops by itself when the supervisor is gone (service.server).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType

from prometheus_client.multiprocess import mark_process_dead

from service.config import Settings
from service.metrics import private_dir
from service.server import build_server, configure_logging, run

log = logging.getLogger("service")

#: Seconds before a worker that died is replaced.
RESTART_DELAY = 1.0


def serve(settings: Settings, sock: socket.socket | None, host: str, port: int, supervisor: int) -> None:
    """A worker's main: the app on the supervisor's socket, or on its own SO_REUSEPORT one, until told to
    stop."""
    os.setpgid(0, 0)
    configure_logging(settings, prefix=f"[worker {os.getpid()}] ")
    if sock is None:
        sock = bind(host, port, reuse_port=True)
    status = run(build_server(settings, host, port, supervisor), sock)
    if status:
        sys.exit(status)


def bind(host: str, port: int, *, reuse_port: bool = False, listen: bool = True) -> socket.socket:
    """A TCP socket bound to ``host:port`` (listening unless ``listen`` is false): ``OSError`` (an unknown
    host is ``socket.gaierror``) when the address cannot be had."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        if listen:
            sock.listen(2048)
    except BaseException:
        sock.close()
        raise
    return sock


def probe(host: str, port: int) -> None:
    """Bind ``host:port`` and let it go: :class:`OSError` when it cannot be had. Without SO_REUSEPORT, so a
    port that another process serves (with SO_REUSEPORT or not) is refused; the workers' gRPC servers
    then bind it with SO_REUSEPORT, together."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port left in TIME_WAIT is free
        s.bind((host, port))


class Supervisor:
    def __init__(self, settings: Settings, host: str, port: int, sock: socket.socket | None = None) -> None:
        self.settings = settings
        self.host = host
        self.port = port
        #: The listening socket, when the caller bound it (cgan-serve does, to refuse a bad address at once).
        self.sock = sock
        self.count = settings.worker_count
        self.workers: list[BaseProcess | None] = [None] * self.count
        self.restart_at: dict[int, float] = {}
        self.signals = 0
        self.last_signal = signal.SIGTERM
        #: Pids the stop signal was passed to.
        self.told: set[int] = set()
        #: A worker did not stop cleanly when told to (exit status 1).
        self.failed = False
        self._context = multiprocessing.get_context("spawn")  # no fork: the parent may hold threads

    def run(self) -> int:
        configure_logging(self.settings, prefix="[supervisor] ")
        try:
            sock = self.sock or self.reserve(self.settings, self.host, self.port)
        except OSError as e:
            log.error("cannot listen on %s:%d: %s", self.host, self.port, e.strerror or e)
            return 1
        with contextlib.ExitStack() as stack:
            stack.callback(sock.close)
            try:
                stack.enter_context(private_dir(always=True))  # removed at exit, after the workers
            except OSError as e:
                log.error("cannot make a metrics directory in PROMETHEUS_MULTIPROC_DIR: %s", e)
                return 1
            previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
            for sig, handler in previous.items():
                stack.callback(signal.signal, sig, handler)
            for index in range(self.count):
                self._start(index, sock)
            log.info("serving on %s:%d with %d workers", self.host, self.port, self.count)
            if self.settings.max_concurrency < self.count:
                share = self.settings.for_worker().max_concurrency
                log.warning(
                    "MAX_CONCURRENCY=%d is below WORKERS=%d: each worker admits %d, %d in all",
                    self.settings.max_concurrency,
                    self.count,
                    share,
                    share * self.count,
                )
            self._supervise(sock)
        return 1 if self.failed else 0

    @staticmethod
    def reserve(settings: Settings, host: str, port: int) -> socket.socket:
        """The supervisor's socket: with REUSE_PORT bound only (the workers listen on their own), else the
        listening socket every worker accepts on."""
        return bind(host, port, reuse_port=True, listen=False) if settings.reuse_port else bind(host, port)

    def _start(self, index: int, sock: socket.socket) -> None:
        # With REUSE_PORT the workers bind the port the supervisor holds (its number: port 0 was resolved).
        shared = None if self.settings.reuse_port else sock
        worker = self._context.Process(
            target=serve,
            args=(self.settings.for_worker(), shared, self.host, sock.getsockname()[1], os.getpid()),
            name=f"cgan-serve-worker-{index}",
        )
        worker.start()
        self.workers[index] = worker

    def _supervise(self, sock: socket.socket) -> None:
        while True:
            alive = [w for w in self.workers if w is not None and w.is_alive()]
            if self.signals:
                # Stopping: nothing is restarted, and the port must close once the workers close theirs
                # (a listener kept open here would take connections that nobody ever accepts).
                sock.close()
                if not alive:
                    return
                for worker in alive:  # one started just as the signal came was not there to be told
                    if worker.pid not in self.told:
                        self._tell(worker, self.last_signal)
            wait([w.sentinel for w in alive], timeout=0.5)
            for index, worker in enumerate(self.workers):
                if worker is None or worker.is_alive():
                    continue
                worker.join()
                mark_process_dead(worker.pid)
                self.workers[index] = None
                if self.signals:
                    # Killed by the very signal passed on: it came before the worker's handlers were in
                    # place, i.e. before it served anything. Only other statuses are failures.
                    if worker.exitcode not in (0, -self.last_signal):
                        log.warning(
                            "worker %d (pid %d) stopped with status %s", index, worker.pid, worker.exitcode
                        )
                        self.failed = True
                    continue
                log.warning(
                    "worker %d (pid %d) exited with status %s; replacing it in %.0fs",
                    index,
                    worker.pid,
                    worker.exitcode,
                    RESTART_DELAY,
                )
                self.restart_at[index] = time.monotonic() + RESTART_DELAY
            for index, when in list(self.restart_at.items()):
                if not self.signals and time.monotonic() >= when:
                    del self.restart_at[index]
                    self._start(index, sock)

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        self.signals += 1
        self.last_signal = signal.Signals(sig)
        for worker in self.workers:
            if worker is not None:
                self._tell(worker, sig)

    def _tell(self, worker: BaseProcess, sig: int) -> None:
        if worker.pid is None:
            return
        self.told.add(worker.pid)
        with contextlib.suppress(ProcessLookupError):  # already gone; the loop reaps it
            os.kill(worker.pid, sig)
