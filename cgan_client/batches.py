"""Turning a streamed ``/dataset`` npz into ``(x, y)`` batches or whole arrays; no I/O here."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from cgan_client.npz_stream import ArchiveError, Event, Header, Labels, NpzStream, Rows


class Batcher:
    """Regroups the rows of the stream (whatever the network chunks held) into ``batch_size`` batches,
    each with its labels from ``y`` (known before the rows: labels in the order asked, per_label each);
    the ``y`` the service sends at the end is checked against it."""

    def __init__(self, batch_size: int, y: np.ndarray) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.batch_size = batch_size
        self.y = y
        self.parser = NpzStream()
        self._parts: list[np.ndarray] = []
        self._held = 0
        self._start = 0

    def feed(self, chunk: bytes) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for event in self.parser.feed(chunk):
            if isinstance(event, Header) and event.shape[0] != len(self.y):
                raise ArchiveError(f"the archive holds {event.shape[0]} images, {len(self.y)} were asked for")
            if isinstance(event, Rows):
                self._parts.append(event.rows)
                self._held += len(event.rows)
                while self._held >= self.batch_size:
                    yield self._batch(self.batch_size)
            elif isinstance(event, Labels):
                if not np.array_equal(event.y, self.y):
                    raise ArchiveError("the archive's labels are not the ones asked for")
                if self._held:
                    yield self._batch(self._held)

    def close(self) -> None:
        self.parser.close()

    def _batch(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        rows = np.concatenate(self._parts) if len(self._parts) > 1 else self._parts[0]
        batch, rest = rows[:size], rows[size:]
        self._parts = [rest] if len(rest) else []
        self._held -= size
        start, self._start = self._start, self._start + size
        return batch, self.y[start : start + size]


class Collector:
    """Fills whole ``x`` and ``y`` arrays, allocated once from the header, as the rows arrive."""

    def __init__(self) -> None:
        self.parser = NpzStream()
        self.x: np.ndarray | None = None
        self.y: np.ndarray | None = None

    def feed(self, chunk: bytes) -> None:
        self._apply(self.parser.feed(chunk))

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        self.parser.close()
        assert self.x is not None and self.y is not None
        return self.x, self.y

    def _apply(self, events: Iterable[Event]) -> None:
        for event in events:
            if isinstance(event, Header):
                self.x = np.empty(event.shape, event.dtype)
            elif isinstance(event, Rows):
                assert self.x is not None
                self.x[event.start : event.start + len(event.rows)] = event.rows
            elif isinstance(event, Labels):
                self.y = event.y.copy()
