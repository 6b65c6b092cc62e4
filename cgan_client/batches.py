"""Turning a streamed ``/dataset`` npz into ``(x, y)`` batches or whole arrays; no I/O here.

The service sends ``y`` (and ``seeds``) before the first row of ``x``, so each batch carries its labels as
soon as its rows are whole.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import numpy as np

from cgan_client.npz_stream import ArchiveError, Event, Header, Member, NpzStream, Rows


class _Reader:
    """What both consumers check: ``y`` and ``seeds`` come before ``x`` and hold one entry per row."""

    def __init__(self) -> None:
        self.parser = NpzStream()
        self.members: dict[str, np.ndarray] = {}
        self.rows = 0

    def _events(self, chunk: bytes) -> Iterator[Header | Rows]:
        for event in self.parser.feed(chunk):
            if isinstance(event, Member):
                self.members[event.name] = event.array
                continue
            if isinstance(event, Header):
                self.rows = event.shape[0]
                for name in ("y", "seeds"):
                    if name not in self.members:
                        raise ArchiveError(f"{name}.npy must come before x.npy (is the service older?)")
                    if self.members[name].shape != (self.rows,):
                        shape = list(self.members[name].shape)
                        raise ArchiveError(f"{name}.npy is {shape}; x.npy has {self.rows} rows")
            yield event

    def close(self) -> None:
        self.parser.close()

    @property
    def order(self) -> str | None:
        order = self.members.get("order")
        return None if order is None else str(order)


class RowBatches(_Reader):
    """Regroups the rows of the stream (whatever the network chunks held) into ``batch_size`` batches,
    each with its labels from ``y``. (Not the service's ``Batcher``, which batches requests.)"""

    def __init__(self, batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        super().__init__()
        self.batch_size = batch_size
        self._parts: list[np.ndarray] = []
        self._held = 0
        self._start = 0

    def feed(self, chunk: bytes) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for event in self._events(chunk):
            if isinstance(event, Rows):
                self._parts.append(event.rows)
                self._held += len(event.rows)
                while self._held >= self.batch_size:
                    yield self._batch(self.batch_size)
        if self.parser.done and self._held:
            yield self._batch(self._held)

    def _batch(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        rows = np.concatenate(self._parts) if len(self._parts) > 1 else self._parts[0]
        batch, rest = rows[:size], rows[size:]
        self._parts = [rest] if len(rest) else []
        self._held -= size
        start, self._start = self._start, self._start + size
        return batch, self.members["y"][start : start + size]


class Collector(_Reader):
    """Fills whole ``x`` (allocated once from its header), ``y`` and ``seeds`` as the stream arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.x: np.ndarray | None = None

    def feed(self, chunk: bytes) -> None:
        self._apply(self._events(chunk))

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        self.close()
        assert self.x is not None
        return self.x, self.members["y"].copy()

    @property
    def seeds(self) -> np.ndarray:
        return self.members["seeds"].copy()

    def _apply(self, events: Iterable[Event]) -> None:
        for event in events:
            if isinstance(event, Header):
                try:
                    self.x = np.empty(event.shape, event.dtype)
                except MemoryError:
                    size = math.prod(event.shape) * event.dtype.itemsize
                    raise ArchiveError(f"x.npy claims {size} bytes, more than can be allocated") from None
            elif isinstance(event, Rows):
                assert self.x is not None
                self.x[event.start : event.start + len(event.rows)] = event.rows
