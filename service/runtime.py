"""What the lifespan builds and the data plane uses: settings, metrics, the registry, the admission limiter
(shared by HTTP and gRPC), the batcher and the worker threads. Nothing here runs at import or construction;
:meth:`Runtime.start` does, in the lifespan.

Work on a worker thread outlives nobody: a request cancelled while its thread works (its client left, or
the server's grace period ran out) tells the work to halt and waits for it, one batch at most, before the
cancellation goes on up to the guard, which only then gives the admission slot back; and a stopping
service (``Runtime.halting``) halts whatever still runs. So a slot held is work being done, and a stopped
process has no loop left running.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections.abc import AsyncIterator, Callable, Generator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import anyio

from service.admission import ConcurrencyLimiter
from service.batching import Batcher
from service.config import Settings
from service.dataplane.jobs import run_jobs
from service.metrics import Metrics
from service.models import ModelRegistry

log = logging.getLogger(__name__)
T = TypeVar("T")


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.registry = ModelRegistry(settings, self.metrics)
        #: MAX_CONCURRENCY running, MAX_QUEUE waiting: one limiter for every protocol this process serves.
        self.limiter = ConcurrencyLimiter(settings.max_concurrency, settings.max_queue)
        self.shutting_down = False
        #: Set when the service stops (:meth:`stop`; service.server sets it just before the end of the grace
        #: period): every :class:`Halt` reads true, so blocking work still running ends.
        self.halting = threading.Event()
        self._streams: ThreadPoolExecutor | None = None
        self._watcher: asyncio.Task[None] | None = None
        self.batcher: Batcher | None = None
        self.publish_ready()

    def readiness(self) -> tuple[bool, str | None]:
        if self.shutting_down:
            return False, "shutting down"
        return self.registry.readiness()

    def publish_ready(self) -> None:
        """``cgan_ready`` from :meth:`readiness`: it changes only with a scan or a shutdown, and each sets it
        (a callback gauge would be exact at every scrape, but workers' gauges live in shared files)."""
        self.metrics.ready.set(float(self.readiness()[0]))

    def begin_shutdown(self) -> None:
        """Not ready from now on (draining), still serving. Not from a signal handler: publishing takes
        the metrics' lock, which the interrupted code may hold (service.server sets the flag instead)."""
        self.shutting_down = True
        self.publish_ready()

    async def start(self) -> None:
        """Load every model before the first request; then watch MODELS_DIR for new versions."""
        self.shutting_down = False
        self.halting.clear()
        # Archive streams: one thread per admitted request, so the admission limit, not this pool, queues.
        self._streams = ThreadPoolExecutor(self.settings.max_concurrency, thread_name_prefix="stream")
        self.batcher = Batcher(
            functools.partial(run_jobs, lane=True), self.settings.batch_max_images, self.settings.lanes
        )
        await self.rescan()
        ready, reason = self.readiness()
        if ready:
            served = {n: f"v{m.version} ({m.source})" for n, m in self.registry.models.items()}
            log.info("ready: serving %s", served)
        else:
            log.warning("started but NOT ready: %s (MODELS_DIR %s)", reason, self.settings.models_dir)
        if self.settings.reload_interval > 0:
            self._watcher = asyncio.create_task(self._watch(), name="models-dir-watcher")

    async def stop(self) -> None:
        self.begin_shutdown()
        self.halting.set()
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        if self._streams is not None:
            self._streams.shutdown(wait=False, cancel_futures=True)
        if self.batcher is not None:
            self.batcher.close()

    async def rescan(self) -> dict[str, int]:
        """Run a registry scan on its own daemon thread, so a slow model load never holds up requests and
        a scan stuck in the filesystem never holds up process exit (a pool's threads are joined at exit)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[dict[str, int]] = loop.create_future()

        def settle(outcome: dict[str, int] | BaseException) -> None:
            if done.done():
                return  # the caller gave up (shutdown)
            if isinstance(outcome, BaseException):
                done.set_exception(outcome)
            else:
                done.set_result(outcome)

        def scan() -> None:
            try:
                outcome: dict[str, int] | BaseException = self.registry.scan()
            except BaseException as e:
                outcome = e
            with contextlib.suppress(RuntimeError):  # the loop closed at exit: nobody to tell
                loop.call_soon_threadsafe(settle, outcome)

        threading.Thread(target=scan, name="model-loader", daemon=True).start()
        try:
            return await done
        finally:
            self.publish_ready()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reload_interval)
            try:
                await self.rescan()
            except Exception:
                # A scan that crashes must not end hot reload for the life of the process.
                log.exception("scanning MODELS_DIR failed; retrying in %ss", self.settings.reload_interval)

    async def blocking(self, function: Callable[..., T], *args: object) -> T:
        """``function(*args, halt=halt)`` on an archive-stream thread (one per admitted request), off the
        event loop. ``halt`` (a :class:`Halt`) turns true when this call is cancelled or the service stops;
        the function reads it between batches and ends. A cancelled call returns only once the function
        has, so the request keeps its admission slot while its work runs."""
        assert self._streams is not None
        halt = Halt(self.halting)
        work = self._streams.submit(function, *args, halt=halt)
        try:
            return await asyncio.wrap_future(work)
        except asyncio.CancelledError:
            halt.set()
            await _settled(work)
            raise

    async def stream(self, chunks: Generator[bytes, None, None]) -> AsyncIterator[bytes]:
        """Drive a blocking chunk generator on a worker thread, one chunk at a time.

        When the client goes away the response task is cancelled here, and no further chunk is
        computed: the chunk in progress (one batch) is waited for, then the generator is closed, and only
        then does the cancellation go on (and the request give its admission slot back).
        """
        assert self._streams is not None
        pending = None
        try:
            while True:
                pending = self._streams.submit(next, chunks, None)
                chunk = await asyncio.wrap_future(pending)
                if chunk is None:
                    return
                yield chunk
        finally:
            if pending is not None and not pending.done():
                await _settled(pending)
            chunks.close()


class Halt:
    """Asks blocking work to end early (it reads it between batches): true once :meth:`set` (its caller
    was cancelled) or once the service's ``halting`` event is (the service is stopping)."""

    def __init__(self, halting: threading.Event) -> None:
        self._halting = halting
        self._caller = threading.Event()

    def set(self) -> None:
        self._caller.set()

    def __call__(self) -> bool:
        return self._caller.is_set() or self._halting.is_set()


async def _settled(work: Future) -> None:
    """Wait until ``work`` (told to halt, or one batch) has ended, whatever it ended with, even while this
    task is being cancelled: a cancelled request must not let go of its slot while its thread still works.
    Shielded from Starlette's cancel scope (which cancels again at every await) and from a further
    ``Task.cancel`` (the guard's, the server's), which the caller re-raises anyway."""
    waiting = asyncio.wrap_future(work)
    with anyio.CancelScope(shield=True):
        while not waiting.done():
            # The work's own outcome is no use to a cancelled caller; a further cancel means wait on.
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.shield(waiting)
    if not waiting.cancelled():
        waiting.exception()  # marked retrieved, so asyncio does not log it as never retrieved
