"""The asynchronous client: the same calls as :class:`cgan_client.Client` with ``await``, carried over httpx's
async client (the calls themselves are :mod:`cgan_client._core`'s)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np

from cgan_client import _common, _core
from cgan_client._common import Config

R = TypeVar("R")


class AsyncClient:
    """``async with AsyncClient("http://host:8000", token=...) as api: x = await api.generate(7, 32)``."""

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
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = Config(base_url, token, model, version, retries, max_retry_wait, timeout)
        self._http = httpx.AsyncClient(transport=transport, **self.config.client_options())

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def generate(
        self,
        label: int | str,
        n: int = 16,
        *,
        seed: int | None = None,
        version: int | None = None,
        model: str | None = None,
        codes: Sequence[float] | Sequence[Sequence[float]] | None = None,
    ) -> np.ndarray:
        """uint8 ``[n, H, W]``; see :meth:`cgan_client.Client.generate`."""
        return await self._run(_core.generate(self.config, label, n, seed, version, model, codes))

    async def traverse(
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
        return await self._run(
            _core.traverse(self.config, label, code, n, steps, seed, version, model, codes)
        )

    async def iter_dataset(
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
    ) -> AsyncIterator[tuple[np.ndarray, np.ndarray]]:
        """``(x, y)`` batches while ``/dataset`` streams; see :meth:`cgan_client.Client.iter_dataset`."""
        selection = _core.Selection(per_label, labels, seed, version, model, codes, order, start, stop)
        call = _core.iter_dataset(self.config, selection, batch_size)
        async for batch in self._stream(_core.Run(call)):
            yield batch

    async def dataset(
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
        """``(x, y)`` whole; see :meth:`cgan_client.Client.dataset`."""
        selection = _core.Selection(per_label, labels, seed, version, model, codes, order, start, stop)
        return await self._run(_core.dataset(self.config, selection))

    async def save_dataset(
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
        """The archive streamed to ``path``; see :meth:`cgan_client.Client.save_dataset`."""
        selection = _core.Selection(per_label, labels, seed, version, model, codes, order, start, stop)
        return await self._run(_core.save_dataset(self.config, selection, path, format, progress))

    async def model_info(self, model: str | None = None, version: int | None = None) -> dict[str, Any]:
        """The service's description of a model; see :meth:`cgan_client.Client.model_info`."""
        return await self._run(_core.model_info(self.config, model, version))

    # --- transport -------------------------------------------------------------------------------------

    async def _run(self, call: _core.Call[R]) -> R:
        run = _core.Run(call)
        async for _ in self._stream(run):
            pass
        return run.value  # type: ignore[return-value]

    async def _stream(self, run: _core.Run[Any]) -> AsyncIterator[Any]:
        """Carries out the run's exchanges in turn, yielding what their sinks hand out as bodies arrive."""
        with contextlib.closing(run):
            while run.exchange is not None:
                request, sink = run.exchange
                async with self._send(request) as response:
                    with contextlib.closing(sink):
                        sink.open(response)
                        async for chunk in response.aiter_bytes():
                            for item in sink.feed(chunk):
                                yield item
                        answer = sink.finish()
                run.answer(answer)

    @contextlib.asynccontextmanager
    async def _send(self, request: _core.Request) -> AsyncIterator[httpx.Response]:
        """The response to ``request``, its body still to come; see :meth:`cgan_client.Client._send`."""
        for attempt in itertools.count():
            http_request = self._http.build_request(
                request.method, request.path, json=request.json, params=request.params
            )
            response = await self._http.send(http_request, stream=True)
            try:
                delay = _common.retry_delay(response, attempt, self.config)
                if delay is not None:
                    await response.aclose()
                    await asyncio.sleep(delay)
                    continue
                if response.is_error:
                    raise _common.error_from(response, await response.aread())
                yield response
                return
            finally:
                await response.aclose()
