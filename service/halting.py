"""Blocking work that ends when nobody wants it any more.

Work on a worker thread (a filtered pick's candidate loop, an archive's batch, a batcher lane's run) cannot
be cancelled from the event loop; it reads a :class:`Halt` between batches instead. A request cancelled
while its thread works (its client left, or the server's grace period ran out) sets its halt and waits for
the work to end with :func:`settled`, one batch at most, before the cancellation goes on up to the guard,
which only then gives the admission slot back. So a slot held is work being done, and a stopping service
(``Runtime.halting``, which every halt reads too) has no loop left running.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from concurrent.futures import Future

import anyio


class Halt:
    """Asks blocking work to end early (it calls this between batches): true once :meth:`set` (its caller
    was cancelled) or once the service's ``halting`` event is (the service is stopping)."""

    def __init__(self, halting: threading.Event) -> None:
        self._halting = halting
        self._caller = threading.Event()

    def set(self) -> None:
        self._caller.set()

    def __call__(self) -> bool:
        return self._caller.is_set() or self._halting.is_set()


async def settled(work: Future) -> None:
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
