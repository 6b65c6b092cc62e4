"""Dynamic batching for /generate: requests that arrive while a batch is running ride the next one.

A small /generate is dominated by fixed costs (a thread hop, dozens of tiny numpy calls for the noise,
an onnxruntime call), not by pixels. The batcher keeps one batch in flight on its own thread; whatever
requests arrive meanwhile are taken together next: one hop, one noise call and one onnxruntime run per
model for all of them, then each request's own encoding. An idle service runs a lone request at once,
so batching adds no latency, and under load it turns N hops and N runs into one.

Results do not depend on the company a request keeps: image i's noise depends on its seed only, and
the contract requires a generator's rows to be independent of the batch around them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from service import contract
from service.models import LoadedModel


@dataclass(eq=False)
class Job:
    model: LoadedModel
    label: int
    n: int
    seed: int
    #: Turns this job's ``[n, H, W, C]`` images into response bytes; runs on the batch thread.
    encode: Callable[[np.ndarray], bytes]
    future: asyncio.Future[bytes] = field(init=False, repr=False)


class Batcher:
    def __init__(self, max_images: int) -> None:
        #: One batch never exceeds this many images (unless a single request does), bounding its latency.
        self.max_images = max_images
        self._queue: list[Job] = []
        self._running = False
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="generate-batch")

    @property
    def waiting(self) -> int:
        """Requests queued for the next batch."""
        return len(self._queue)

    async def submit(self, job: Job) -> bytes:
        loop = asyncio.get_running_loop()
        job.future = loop.create_future()
        self._queue.append(job)
        if not self._running:
            self._start(loop)
        return await job.future

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        # Clients that gave up while queued are dropped here, before any work is spent on them.
        queue = [job for job in self._queue if not job.future.done()]
        take, images = 0, 0
        while take < len(queue) and (take == 0 or images + queue[take].n <= self.max_images):
            images += queue[take].n
            take += 1
        batch, self._queue = queue[:take], queue[take:]
        if not batch:
            return
        self._running = True
        done = self._thread.submit(run_batch, batch)
        done.add_done_callback(functools.partial(self._wake, loop, batch))

    def _wake(self, loop: asyncio.AbstractEventLoop, batch: list[Job], done: Future) -> None:
        # Runs on the batch thread; a loop already closed at process exit has nobody left to tell.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._finish, loop, batch, done)

    def _finish(self, loop: asyncio.AbstractEventLoop, batch: list[Job], done: Future) -> None:
        self._running = False
        try:
            outcomes = done.result()
        except BaseException as e:  # the whole batch failed (or was cancelled at shutdown)
            outcomes = [e] * len(batch)
        for job, outcome in zip(batch, outcomes, strict=True):
            if job.future.done():
                continue  # the client left; nobody is waiting for this one
            if isinstance(outcome, BaseException):
                job.future.set_exception(outcome)
            else:
                job.future.set_result(outcome)
        if self._queue:
            self._start(loop)


def run_batch(batch: list[Job]) -> list[bytes | BaseException]:
    """One onnxruntime run per model for the whole batch, then each job's encoding; errors stay per job."""
    outcomes: list[bytes | BaseException] = [b""] * len(batch)
    by_model: dict[LoadedModel, list[int]] = {}
    for i, job in enumerate(batch):
        by_model.setdefault(job.model, []).append(i)
    for model, members in by_model.items():
        jobs = [batch[i] for i in members]
        labels = np.repeat(np.array([j.label for j in jobs], dtype=np.int64), [j.n for j in jobs])
        seeds = np.concatenate([contract.request_seeds(j.seed, j.n) for j in jobs])
        try:
            images = model.generate(labels, seeds)
        except Exception as e:
            for i in members:
                outcomes[i] = e
            continue
        start = 0
        for i, job in zip(members, jobs, strict=True):
            try:
                outcomes[i] = job.encode(images[start : start + job.n])
            except Exception as e:
                outcomes[i] = e
            start += job.n
    return outcomes
