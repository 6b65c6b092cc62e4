"""The synchronous client (httpx)."""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from cgan_client import _common
from cgan_client._common import Config, ServiceError
from cgan_client.batches import Collector, RowBatches


class Client:
    """``Client("http://host:8000", token=..., version=3)``: images from a cgan-synth service as numpy.

    ``model`` / ``version`` pin what every call uses unless the call names its own; without a version the
    service answers with its newest loaded one. 429 and 503 are retried after the Retry-After the service
    sends, at most ``retries`` times; other refusals raise :class:`ServiceError` naming the field.
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
        body = _common.generate_body(self.config, label, n, seed, model, version, codes)
        return _common.load_npy(self._request("POST", "/generate", json=body).content)

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
        sweep = {"code": code, "steps": steps}
        body = _common.generate_body(self.config, label, n, seed, model, version, codes, sweep)
        images = _common.load_npy(self._request("POST", "/generate", json=body).content)
        return images.reshape(n, steps, *images.shape[1:])

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
        with self._stream("POST", "/dataset", json=body) as response:
            batches = RowBatches(batch_size)
            for chunk in response.iter_bytes():
                yield from batches.feed(chunk)
            batches.close()

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
        with self._stream("POST", "/dataset", json=body) as response:
            for chunk in response.iter_bytes():
                collector.feed(chunk)
        return collector.result()

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
        body = _common.dataset_body(
            self.config, per_label, labels, seed, model, version, format, codes, order, start, stop
        )
        target = Path(path)
        partial = target.with_name(f".{target.name}.part")
        try:
            with self._stream("POST", "/dataset", json=body) as response, partial.open("wb") as out:
                bar = _common.download_bar(response, target.name, progress)
                try:
                    for chunk in response.iter_bytes():
                        out.write(chunk)
                        bar.update(len(chunk))
                finally:
                    bar.close()
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
        return target

    def model_info(self, model: str | None = None, version: int | None = None) -> dict[str, Any]:
        """The service's description of a model (``/v1/models/{name}``): card, loaded versions."""
        fields = _common.pick(self.config, model, version)
        if "model" not in fields:
            listing = self._request("GET", "/v1/models").json()
            fields["model"] = listing["default"] or _only(listing)
        params = {"version": fields["version"]} if "version" in fields else None
        return self._request("GET", f"/v1/models/{fields['model']}", params=params).json()

    # --- transport -------------------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        with self._stream(method, path, **kwargs) as response:
            response.read()
            return response

    @contextlib.contextmanager
    def _stream(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        for attempt in itertools.count():
            response = self._http.send(self._http.build_request(method, path, **kwargs), stream=True)
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


def _only(listing: dict[str, Any]) -> str:
    names = [m["name"] for m in listing["models"]]
    if len(names) != 1:
        raise ServiceError(422, f"model: several models are loaded ({', '.join(names)}); name one", "model")
    return names[0]
