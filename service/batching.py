"""Dynamic batching for /generate: requests that arrive while a batch is running ride the next one.

A small /generate is dominated by fixed costs (a thread hop, dozens of tiny numpy calls for the noise,
an onnxruntime call), not by pixels. The batcher keeps one batch in flight on its own thread; whatever
requests arrive meanwhile are taken together next: one hop, one noise call and one onnxruntime run per
model for all of them, then each request's own encoding. An idle service runs a lone request at once,
so batching adds no latency, and under load it turns N hops and N runs into one.

With ``lanes`` > 1, that many batches run at once, each on its own thread: while one lane encodes its PNGs
(Python, mostly holding the GIL) another runs the model (onnxruntime, without it), so a single-threaded
model run per lane keeps every core busy without onnxruntime's per-run thread hand-offs.

Results do not depend on the company a request keeps: image i's noise depends on its seed only, and
the contract requires a generator's rows to be independent of the batch around them.

The batcher only decides *when* work runs and who gets which result; *what* runs is the data plane's
:func:`service.dataplane.jobs.run_jobs`, handed in, the same function an unbatched caller uses.

A request cancelled while queued is dropped before any work is spent on it; one cancelled while its batch
runs sets its job's halt (a filtered job ends within its run in progress) and waits for the batch to end, so
its admission slot is held as long as work it asked for is being done (:mod:`service.halting`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

from service.halting import Halt, settled


class Sized(Protocol):
    #: Images this job asks for; a batch holds at most ``max_images`` of them.
    n: int
    #: Set when the request that asked for this job is cancelled while its batch runs (None: nothing reads
    #: it, the job's one run is short).
    halt: Halt | None


#: Runs a batch of jobs; one outcome (response bytes, or the exception that job failed with) per job.
RunJobs = Callable[[Sequence], Sequence[bytes | BaseException]]


class Batcher:
    def __init__(self, run: RunJobs, max_images: int, lanes: int = 1) -> None:
        if lanes < 1:
            raise ValueError(f"lanes must be at least 1, got {lanes}")
        self.run = run
        #: One batch never exceeds this many images (unless a single request does), bounding its latency.
        self.max_images = max_images
        self.lanes = lanes
        self._queue: list[tuple[Sized, asyncio.Future[bytes]]] = []
        #: Each request's future whose batch is running -> that batch's run.
        self._running: dict[asyncio.Future[bytes], Future] = {}
        self._idle = lanes
        self._thread = ThreadPoolExecutor(lanes, thread_name_prefix="generate-batch")

    @property
    def waiting(self) -> int:
        """Requests queued for the next batch."""
        return len(self._queue)

    async def submit(self, job: Sized) -> bytes:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes] = loop.create_future()
        self._queue.append((job, future))
        self._start(loop)
        try:
            return await future
        except asyncio.CancelledError:
            running = self._running.get(future)
            if running is not None:
                if job.halt is not None:
                    job.halt.set()
                await settled(running)
            raise

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Hand queued jobs to idle lanes, one batch per lane, until either runs out."""
        while self._idle and self._queue:
            # Clients that gave up while queued are dropped here, before any work is spent on them.
            queue = [entry for entry in self._queue if not entry[1].done()]
            take, images = 0, 0
            while take < len(queue) and (take == 0 or images + queue[take][0].n <= self.max_images):
                images += queue[take][0].n
                take += 1
            batch, self._queue = queue[:take], queue[take:]
            if not batch:
                return
            self._idle -= 1
            done = self._thread.submit(self.run, [job for job, _ in batch])
            self._running.update((future, done) for _, future in batch)
            done.add_done_callback(functools.partial(self._wake, loop, batch))

    def _wake(self, loop: asyncio.AbstractEventLoop, batch: list, done: Future) -> None:
        # Runs on the batch thread; a loop already closed at process exit has nobody left to tell.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._finish, loop, batch, done)

    def _finish(self, loop: asyncio.AbstractEventLoop, batch: list, done: Future) -> None:
        self._idle += 1
        try:
            outcomes = done.result()
        except BaseException as e:  # the whole batch failed (or was cancelled at shutdown)
            outcomes = [e] * len(batch)
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            self._running.pop(future, None)
            if future.done():
                continue  # the client left; nobody is waiting for this one
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
        self._start(loop)
