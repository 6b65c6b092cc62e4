"""Filesystem calls with a time limit: each runs on a daemon thread that the caller waits for at most
``timeout`` seconds. A stalled network filesystem blocks a stat() or read() in the kernel, where no signal
or timeout reaches it; waiting on a thread is the one way to give up on it. A call still running from an
earlier time is not started again (one thread per stuck path, not one per scan), and daemon threads hold up
neither other paths nor process exit.

The loader reads model files through this (:class:`~service.models.loader.BoundedReader`); the registry
looks up the entries of the model roots through it."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from typing import Any


class Stalled(Exception):
    """A call that had not returned within the time limit. ``again``: it was still running from an earlier
    call, so the caller has reported it already and it was not started again."""

    def __init__(self, again: bool) -> None:
        super().__init__("still running from an earlier call" if again else "did not return in time")
        self.again = again


class BoundedCalls:
    """Runs calls keyed by what they touch (a path) on daemon threads, waiting at most ``timeout``."""

    def __init__(self, timeout: float, thread_name: str) -> None:
        self.timeout = timeout
        self.thread_name = thread_name
        self._pending: dict[Hashable, concurrent.futures.Future[Any]] = {}

    def gather(self, calls: Mapping[Hashable, Callable[[], Any]]) -> dict[Hashable, Any]:
        """Start every call at once and wait for them all until one deadline, ``timeout`` from now.

        Returns each call's result, or the exception it raised, by key: :class:`Stalled` for one still
        running at the deadline, or still running from an earlier gather (then not started again).
        """
        deadline = time.monotonic() + self.timeout
        outcomes: dict[Hashable, Any] = {}
        started: dict[Hashable, tuple[concurrent.futures.Future[Any], threading.Thread]] = {}
        for key, call in calls.items():
            pending = self._pending.get(key)
            if pending is not None and not pending.done():
                outcomes[key] = Stalled(again=True)
                continue
            future: concurrent.futures.Future[Any] = concurrent.futures.Future()
            self._pending[key] = future
            thread = threading.Thread(target=_run, args=(call, future), name=self.thread_name, daemon=True)
            thread.start()
            started[key] = future, thread
        for key, (future, thread) in started.items():
            try:
                outcomes[key] = future.result(max(0.0, deadline - time.monotonic()))
            except concurrent.futures.TimeoutError:
                outcomes[key] = Stalled(again=False)
            except Exception as e:
                outcomes[key] = e
            if future.done():
                self._pending.pop(key, None)
                thread.join(1)  # it has done its work: gone before the caller counts threads
        return {key: outcomes[key] for key in calls}

    def call(self, key: Hashable, call: Callable[[], Any]) -> Any:
        """One call's result (:meth:`gather`), raising what it raised or :class:`Stalled`."""
        outcome = self.gather({key: call})[key]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def _run(call: Callable[[], Any], future: concurrent.futures.Future[Any]) -> None:
    try:
        future.set_result(call())
    except BaseException as e:
        future.set_exception(e)
