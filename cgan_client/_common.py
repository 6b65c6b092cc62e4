"""What the sync and async clients share: settings, request bodies, retry timing, errors, decoding."""

from __future__ import annotations

import email.utils
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

#: Statuses that mean "not now": the service says when to come back in Retry-After.
#: Seconds an idle pooled connection is kept; below the server's keep-alive timeout (5 s).
KEEPALIVE_EXPIRY = 2.0
RETRYABLE = frozenset({429, 503})


class ServiceError(Exception):
    """The service refused a request: ``status``, its ``detail`` (which names the field) and ``field``."""

    def __init__(self, status: int, detail: str, field: str | None = None) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail
        self.field = field


@dataclass(frozen=True)
class Config:
    """A client's settings; plain data, so an input pipeline can rebuild the client in another process."""

    base_url: str
    token: str | None = None
    model: str | None = None
    version: int | None = None
    #: Further attempts after a 429/503, each after the Retry-After the service sent (bounded by
    #: ``max_retry_wait`` seconds); 0 turns retrying off.
    retries: int = 5
    max_retry_wait: float = 30.0
    timeout: float = 60.0

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def client_options(self) -> dict[str, Any]:
        # read timeout per chunk, so a long stream is fine as long as bytes keep coming. Idle connections
        # are dropped before the server's keep-alive timeout (uvicorn: 5 s) closes them: reusing one the
        # server is closing at that moment fails the request with a ReadError.
        return {
            "base_url": self.base_url,
            "headers": self.headers(),
            "timeout": self.timeout,
            "limits": httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY),
        }


def retry_delay(response: httpx.Response, attempt: int, config: Config) -> float | None:
    """Seconds to wait before trying again, or None when this response is final."""
    if response.status_code not in RETRYABLE or attempt >= config.retries:
        return None
    value = response.headers.get("retry-after", "").strip()
    if value.isdigit():
        delay = float(value)
    elif value:
        try:
            delay = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            delay = 0.5 * 2**attempt
    else:
        delay = 0.5 * 2**attempt
    return min(max(delay, 0.0), config.max_retry_wait)


def error_from(response: httpx.Response, body: bytes) -> ServiceError:
    try:
        payload = httpx.Response(response.status_code, content=body).json()
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        detail = payload.get("detail") or payload.get("error") or body.decode(errors="replace")
        return ServiceError(response.status_code, str(detail), payload.get("field"))
    return ServiceError(response.status_code, body.decode(errors="replace")[:500] or response.reason_phrase)


def pick(config: Config, model: str | None, version: int | None) -> dict[str, Any]:
    """The model/version fields of a request body: the call's, else the client's pinned ones."""
    fields: dict[str, Any] = {}
    if (model := model or config.model) is not None:
        fields["model"] = model
    if (version := version if version is not None else config.version) is not None:
        fields["version"] = version
    return fields


def generate_body(
    config: Config,
    label: int | str,
    n: int,
    seed: int | None,
    model: str | None,
    version: int | None,
    codes: Sequence[float] | Sequence[Sequence[float]] | None = None,
    traverse: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"label": label, "n": n, "format": "npy", **pick(config, model, version)}
    if seed is not None:
        body["seed"] = seed
    if codes is not None:
        body["codes"] = np.asarray(codes, dtype=np.float64).tolist()  # lists, tuples or arrays alike
    if traverse is not None:
        body["traverse"] = traverse
    return body


#: The service's default order of a data set's images: class-mixed, ready to train on as it streams.
DEFAULT_ORDER = "shuffled"


def dataset_body(
    config: Config,
    per_label: int,
    labels: Sequence[int | str] | None,
    seed: int | None,
    model: str | None,
    version: int | None,
    format: str = "npz",
    codes: Sequence[float] | None = None,
    order: str = DEFAULT_ORDER,
    start: int | None = None,
    stop: int | None = None,
) -> dict[str, Any]:
    """A ``/dataset`` body; the service checks every field and names the one at fault."""
    body: dict[str, Any] = {
        "per_label": per_label,
        "format": format,
        "order": order,
        **pick(config, model, version),
    }
    if labels is not None:
        body["labels"] = list(labels)
    if seed is not None:
        body["seed"] = seed
    if codes is not None:
        body["codes"] = np.asarray(codes, dtype=np.float64).tolist()
    if start is not None:
        body["start"] = start
    if stop is not None:
        body["stop"] = stop
    return body


def load_npy(content: bytes) -> np.ndarray:
    return np.load(io.BytesIO(content), allow_pickle=False)


def download_bar(response: httpx.Response, path: str, show: bool) -> Any:
    """A progress bar over the bytes of a download, on stderr when it is a terminal (``show``: wanted at
    all). The archive's size is not known while it streams, so it counts bytes and their rate."""
    if not show:
        return _NoBar()
    from tqdm import tqdm  # only when a bar is wanted: the client's imports stay httpx and numpy

    images = response.headers.get("x-images", "?")
    return tqdm(desc=f"{path} ({images} images)", unit="B", unit_scale=True, disable=None)


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass
