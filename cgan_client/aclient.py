"""The asynchronous client (httpx), the same calls as :class:`cgan_client.Client` with ``await``."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import numpy as np

from cgan_client import _common
from cgan_client._common import Config
from cgan_client.batches import Collector, RowBatches
from cgan_client.client import _only


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
        body = _common.generate_body(self.config, label, n, seed, model, version, codes)
        return _common.load_npy((await self._request("POST", "/generate", json=body)).content)

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
        sweep = {"code": code, "steps": steps}
        body = _common.generate_body(self.config, label, n, seed, model, version, codes, sweep)
        images = _common.load_npy((await self._request("POST", "/generate", json=body)).content)
        return images.reshape(n, steps, *images.shape[1:])

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
        body = _common.dataset_body(
            self.config,
            per_label,
            labels,
            seed,
            model,
            version,
            codes=codes,
            order=order,
            start=start,
            stop=stop,
        )
        async with self._stream("POST", "/dataset", json=body) as response:
            batches = RowBatches(batch_size)
            async for chunk in response.aiter_bytes():
                for batch in batches.feed(chunk):
                    yield batch
            batches.close()

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
        body = _common.dataset_body(
            self.config,
            per_label,
            labels,
            seed,
            model,
            version,
            codes=codes,
            order=order,
            start=start,
            stop=stop,
        )
        collector = Collector()
        async with self._stream("POST", "/dataset", json=body) as response:
            async for chunk in response.aiter_bytes():
                collector.feed(chunk)
        return collector.result()

    async def model_info(self, model: str | None = None, version: int | None = None) -> dict[str, Any]:
        fields = _common.pick(self.config, model, version)
        if "model" not in fields:
            listing = (await self._request("GET", "/v1/models")).json()
            fields["model"] = listing["default"] or _only(listing)
        params = {"version": fields["version"]} if "version" in fields else None
        return (await self._request("GET", f"/v1/models/{fields['model']}", params=params)).json()

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async with self._stream(method, path, **kwargs) as response:
            await response.aread()
            return response

    @contextlib.asynccontextmanager
    async def _stream(self, method: str, path: str, **kwargs: Any) -> AsyncIterator[httpx.Response]:
        for attempt in itertools.count():
            response = await self._http.send(self._http.build_request(method, path, **kwargs), stream=True)
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
