"""Admission, whichever protocol carried the request: whether its bearer token is the one
(:func:`bearer_matches`), how many requests run at once and how many wait (:class:`ConcurrencyLimiter`), and
how many bytes of request bodies the process holds meanwhile (:class:`BodyBudget`).

One limiter per process (``Runtime.limiter``): the HTTP guard (:class:`service.http.middleware.Guard`) and
the gRPC servicer (:mod:`service.grpc`) take their slots from the same instance, so MAX_CONCURRENCY and
MAX_QUEUE bound both protocols together, not each on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections import deque


def bearer_matches(authorization: bytes, token: bytes) -> bool:
    """Whether an ``Authorization`` value (header or gRPC metadata) is ``Bearer <token>``: the scheme in any
    case, the whole token compared in constant time, so timing does not reveal how much of a guess matched."""
    scheme, _, credentials = authorization.partition(b" ")
    return scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(), token)


class ConcurrencyLimiter:
    """At most ``limit`` holders and ``queue`` waiters (FIFO); beyond that :meth:`acquire` answers False.

    Loop-agnostic (futures are made at wait time), so one app can be served by several event loops in turn.
    """

    def __init__(self, limit: int, queue: int) -> None:
        self.limit = limit
        self.queue = queue
        self.active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def full(self) -> bool:
        """Every slot taken and the queue full: :meth:`try_acquire` would say False."""
        return self.active >= self.limit and len(self._waiters) >= self.queue

    def try_acquire(self) -> bool | None:
        """Without waiting: True with a slot, False when the queue is full too, None when one must wait."""
        if self.active < self.limit and not self._waiters:
            self.active += 1
            return True
        return False if len(self._waiters) >= self.queue else None

    async def acquire(self, timeout: float | None = None) -> bool:
        """True with a slot; False when the queue is full; :class:`TimeoutError` after ``timeout`` s."""
        got = self.try_acquire()
        return got if got is not None else await self.wait(timeout)

    async def wait(self, timeout: float | None = None) -> bool:
        """Queue for a slot (after :meth:`try_acquire` said None); :class:`TimeoutError` after ``timeout``."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                await waiter  # release() hands its slot straight to us, so `active` is already counted
        except BaseException:  # cancelled, or timed out
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot arrived just as we gave up: pass it on
            else:
                waiter.cancel()
                # release() may already have popped (and skipped) our cancelled waiter.
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise
        return True

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.active -= 1


class BodyBudget:
    """At most ``limit`` bytes of request bodies held by this process at once (BODY_BUDGET_BYTES), whether
    they are still arriving, queued or being served. The HTTP guard reserves a body's bytes as soon as they
    are declared (``Content-Length``) or arrive (chunked), *before* the request is admitted: a body is held
    in memory while it is read, so the concurrency limiter alone, which counts admitted requests, does not
    bound what slow or stalled senders make the process hold. Bytes are given back when the request ends,
    however it ends (:meth:`Reservation.release`).

    Bodies larger than ``small`` (MAX_BODY_BYTES: every `/generate` and `/dataset` body fits) may use only
    ``limit - reserve``: the last eighth stays for small bodies, so a few stalled 4 MiB inference bodies
    cannot make every `/generate` wait for BODY_TIMEOUT_SECONDS (the memory drill saw 5 of 20 good
    requests answered while 8 such bodies stalled). The bound on memory is ``limit`` either way.
    """

    def __init__(self, limit: int, small: int = 0) -> None:
        self.limit = limit
        self.small = small
        self.reserve = limit // 8 if small else 0
        self.in_use = 0

    def reservation(self) -> Reservation:
        return Reservation(self)

    def _take(self, size: int, total: int) -> bool:
        """Grow the bytes in use by ``size`` for a reservation that then holds ``total``."""
        ceiling = self.limit if total <= self.small else self.limit - self.reserve
        if self.in_use + size > ceiling:
            return False
        self.in_use += size
        return True


class Reservation:
    """One request's share of a :class:`BodyBudget`: grown or shrunk to what its body needs now, released
    once (and again harmlessly) when the request ends."""

    def __init__(self, budget: BodyBudget) -> None:
        self.budget = budget
        self.held = 0

    def resize(self, size: int) -> bool:
        """Hold ``size`` bytes; False (holding what it held) when the budget cannot grow by the difference."""
        if size > self.held:
            if not self.budget._take(size - self.held, size):
                return False
        else:
            self.budget.in_use -= self.held - size
        self.held = size
        return True

    def release(self) -> None:
        self.budget.in_use -= self.held
        self.held = 0
