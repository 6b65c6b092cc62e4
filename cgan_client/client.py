"""The synchronous client: the calls of :mod:`cgan_client._core` carried over httpx."""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np

from cgan_client import _common, _core
from cgan_client._common import Config

R = TypeVar("R")


class Client:
    """``Client("http://host:8000", token=..., version=3)``: images from a cgan-synth service as numpy.

    ``model`` / ``version`` pin what every call uses unless the call names its own; without a version the
    service answers with its newest loaded one. 429 and 503 are retried after the Retry-After the service
    sends, at most ``retries`` times; other refusals raise :class:`ServiceError` naming the field. A body
    that is not what the service sends (a damaged or crafted archive, x/y/seeds that disagree, a count of
    images other than the one asked for) raises :class:`~cgan_client.ArchiveError`, whatever is wrong.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        model: str | None = None,
        version: int | None = None,
        retries: int = 5,
        max_retry_wait: float = 30.0,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.config = Config(base_url, token, model, version, retries, max_retry_wait, timeout)
        self._http = httpx.Client(transport=transport, **self.config.client_options())

    @classmethod
    def from_config(cls, config: Config) -> Client:
        return cls(**{k: getattr(config, k) for k in config.__dataclass_fields__})

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- calls ---------------------------------------------------------------------------------------

    def generate(
        self,
        label: int | str,
        n: int = 16,
        *,
        seed: int | None = None,
        version: int | None = None,
        model: str | None = None,
        codes: Sequence[float] | Sequence[Sequence[float]] | None = None,
    ) -> np.ndarray:
        """uint8 ``[n, H, W]`` (``[n, H, W, C]`` for colour models); image i uses ``seed + i``."""
        return self._run(_core.generate(self.config, label, n, seed, version, model, codes))

    def traverse(
        self,
        label: int | str,
        code: int | str,
        n: int = 4,
        *,
        steps: int = 8,
        seed: int | None = None,
        version: int | None = None,
        model: str | None = None,
        codes: Sequence[float] | Sequence[Sequence[float]] | None = None,
    ) -> np.ndarray:
        """uint8 ``[n, steps, H, W]``: style code ``code`` (name or index) swept low to high in ``steps``
        columns, row r from seed ``seed + r`` (the other codes at that seed's values, or at ``codes``)."""
        return self._run(_core.traverse(self.config, label, code, n, steps, seed, version, model, codes))

    def iter_dataset(
        self,
        per_label: int,
        *,
        labels: Sequence[int | str] | None = None,
        seed: int | None = None,
        version: int | None = None,
        model: str | None = None,
        codes: Sequence[float] | None = None,
        batch_size: int = 1024,
        order: str = _common.DEFAULT_ORDER,
        start: int | None = None,
        stop: int | None = None,
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(x, y)`` batches of ``batch_size`` (the last may be smaller) while ``/dataset`` streams: memory
        stays at a batch or two whatever the size of the dataset. Same order and seeds as :meth:`dataset`."""
        selection = _core.Selection(per_label, labels, seed, version, model, codes, order, start, stop)
        call = _core.iter_dataset(self.config, selection, batch_size)
        yield from self._stream(_core.Run(call))

    def dataset(
        self,
        per_label: int,
        *,
        labels: Sequence[int | str] | None = None,
        seed: int | None = None,
        version: int | None = None,
        model: str | None = None,
        codes: Sequence[float] | None = None,
        order: str = _common.DEFAULT_ORDER,
        start: int | None = None,
        stop: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The whole class-balanced set as ``x`` uint8 ``[N, H, W]`` and ``y`` int64 ``[N]``, filled in
        place as it streams (the archive itself is never held).

        ``order``: ``"shuffled"`` (the default: classes mixed, every batch balanced) or ``"by_class"``; the
        images are the same either way. ``start``/``stop``: only the images at positions ``[start, stop)``
        of that order (a contiguous, class-balanced run)."""
        selection = _core.Selection(per_label, labels, seed, version, model, codes, order, start, stop)
        return self._run(_core.dataset(self.config, selection))

    def save_dataset(
        self,
        path: str | os.PathLike[str],
        per_label: int,
        *,
        format: str = "npz",
        labels: Sequence[int | str] | None = None,
        seed: int | None = None,
        version: int | None = None,
        model: str | None = None,
        codes: Sequence[float] | None = None,
        order: str = _common.DEFAULT_ORDER,
        start: int | None = None,
        stop: int | None = None,
        progress: bool = True,
    ) -> Path:
        """Stream the archive in any format the service offers (npz, zip, ...) to ``path``, which appears
        only once complete. ``progress``: a bar on stderr while it downloads, when stderr is a terminal."""
        selection = _core.Selection(per_label, labels, seed, version, model, codes, order, start, stop)
        return self._run(_core.save_dataset(self.config, selection, path, format, progress))

    def model_info(self, model: str | None = None, version: int | None = None) -> dict[str, Any]:
        """The service's description of a model (``/v1/models/{name}``): card, loaded versions."""
        return self._run(_core.model_info(self.config, model, version))

    # --- transport -------------------------------------------------------------------------------------

    def _run(self, call: _core.Call[R]) -> R:
        run = _core.Run(call)
        for _ in self._stream(run):
            pass
        return run.value  # type: ignore[return-value]

    def _stream(self, run: _core.Run[Any]) -> Iterator[Any]:
        """Carries out the run's exchanges in turn, yielding what their sinks hand out as bodies arrive."""
        with contextlib.closing(run):
            while run.exchange is not None:
                request, sink = run.exchange
                with self._send(request) as response, contextlib.closing(sink):
                    sink.open(response)
                    for chunk in response.iter_bytes():
                        yield from sink.feed(chunk)
                    answer = sink.finish()
                run.answer(answer)

    @contextlib.contextmanager
    def _send(self, request: _core.Request) -> Iterator[httpx.Response]:
        """The response to ``request``, its body still to come; a 429/503 is retried after the wait the retry
        rule gives, any other error raises :class:`ServiceError`."""
        for attempt in itertools.count():
            http_request = self._http.build_request(
                request.method, request.path, json=request.json, params=request.params
            )
            response = self._http.send(http_request, stream=True)
            try:
                delay = _common.retry_delay(response, attempt, self.config)
                if delay is not None:
                    response.close()
                    time.sleep(delay)
                    continue
                if response.is_error:
                    raise _common.error_from(response, response.read())
                yield response
                return
            finally:
                response.close()
