"""What the lifespan builds and the data plane uses: settings, metrics, the registry, the admission limiter
(shared by HTTP and gRPC), the batcher and the worker threads. Nothing here runs at import or construction;
:meth:`Runtime.start` does, in the lifespan.

Work on its threads ends when nobody wants it any more (:mod:`service.halting`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections.abc import AsyncIterator, Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from service.admission import ConcurrencyLimiter
from service.batching import Batcher
from service.config import Settings
from service.dataplane.jobs import run_jobs
from service.halting import Halt, settled
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
            await settled(work)
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
                await settled(pending)
            chunks.close()
