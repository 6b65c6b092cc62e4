"""The client's one core: every call written once, without I/O.

A call is a generator. It yields :class:`Exchange` s (a :class:`Request`, and the :class:`Sink` its
response body goes to), is sent back each one's answer, and returns the call's value.
:class:`~cgan_client.Client` and :class:`~cgan_client.AsyncClient` are thin transports that carry the
exchanges of a :class:`Run` over HTTP, sync or async: send the request (again after a 429/503, as
:func:`~cgan_client._common.retry_delay` says), feed the body to the sink as it arrives, answer.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, NamedTuple, TypeVar

import httpx
import numpy as np

from cgan_client._common import Config, ServiceError
from cgan_client.batches import Collector, RowBatches
from cgan_client.npz_stream import ArchiveError, read_npy

R = TypeVar("R")


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    json: dict[str, Any] | None = None
    params: dict[str, Any] | None = None


class Sink:
    """Where a response body goes, chunk by chunk. ``open`` once the response is one to keep (2xx), then
    ``feed`` each chunk (what it returns is handed out while the body streams), ``finish`` once the body is
    all in (its value answers the exchange); ``close`` always, last."""

    def open(self, response: httpx.Response) -> None:
        pass

    def feed(self, chunk: bytes) -> Iterable[Any]:
        return ()

    def finish(self) -> Any:
        return None

    def close(self) -> None:
        pass


class Exchange(NamedTuple):
    request: Request
    sink: Sink


#: A call: yields exchanges, is sent each one's answer, returns the call's value.
Call = Generator[Exchange, Any, R]


class Run(Generic[R]):
    """A call being carried out: ``exchange`` is the one to make now (None once the call is done; ``value``
    is then its value), ``answer`` hands that exchange's answer back and moves on, ``close`` ends the call
    early (its clean-up runs)."""

    def __init__(self, call: Call[R]) -> None:
        self._call = call
        self.exchange: Exchange | None = None
        self.value: R | None = None
        self.answer(None)

    def answer(self, answer: Any) -> None:
        try:
            self.exchange = self._call.send(answer)
        except StopIteration as done:
            self.exchange, self.value = None, done.value

    def close(self) -> None:
        self._call.close()


# --- sinks -----------------------------------------------------------------------------------------------


class Body(Sink):
    """The whole body, decoded once it is in (npy images, JSON)."""

    def __init__(self, decode: Callable[[bytes], Any]) -> None:
        self.decode = decode
        self.parts: list[bytes] = []

    def feed(self, chunk: bytes) -> Iterable[Any]:
        self.parts.append(chunk)
        return ()

    def finish(self) -> Any:
        return self.decode(b"".join(self.parts))


class Batches(Sink):
    """A ``/dataset`` npz as ``(x, y)`` batches, each handed out as soon as its rows are in."""

    def __init__(self, batch_size: int) -> None:
        self.rows = RowBatches(batch_size)

    def feed(self, chunk: bytes) -> Iterable[tuple[np.ndarray, np.ndarray]]:
        return self.rows.feed(chunk)

    def finish(self) -> None:
        self.rows.close()


class Arrays(Sink):
    """A ``/dataset`` npz as whole ``(x, y)``, filled in place as it arrives."""

    def __init__(self) -> None:
        self.collector = Collector()

    def feed(self, chunk: bytes) -> Iterable[Any]:
        self.collector.feed(chunk)
        return ()

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        return self.collector.result()


class ArchiveFile(Sink):
    """Any ``/dataset`` archive, written to ``partial`` as it arrives, with a progress bar on stderr when
    ``progress`` is wanted and stderr is a terminal."""

    def __init__(self, partial: Path, name: str, progress: bool) -> None:
        self.partial, self.name, self.progress = partial, name, progress
        self.out: io.BufferedWriter | None = None
        self.bar: Any = None

    def open(self, response: httpx.Response) -> None:
        self.out = self.partial.open("wb")
        self.bar = download_bar(response, self.name, self.progress)

    def feed(self, chunk: bytes) -> Iterable[Any]:
        assert self.out is not None
        self.out.write(chunk)
        self.bar.update(len(chunk))
        return ()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.out is not None:
            self.out.close()


def load_npy(content: bytes) -> np.ndarray:
    """``/generate``'s body; :class:`~cgan_client.ArchiveError` when it is not a plain ``.npy``."""
    return read_npy(content, "the /generate response")


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


# --- request bodies --------------------------------------------------------------------------------------


def pick(config: Config, model: str | None, version: int | None) -> dict[str, Any]:
    """The model/version fields of a request body: the call's, else the client's pinned ones."""
    return _given(model=model or config.model, version=version if version is not None else config.version)


class Selection(NamedTuple):
    """The images a data-set call asks for: :meth:`~cgan_client.Client.dataset`'s arguments, in its order."""

    per_label: int
    labels: Sequence[int | str] | None
    seed: int | None
    version: int | None
    model: str | None
    codes: Sequence[float] | None
    order: str
    start: int | None
    stop: int | None


def dataset_body(config: Config, selection: Selection, format: str = "npz") -> dict[str, Any]:
    """A ``/dataset`` body; the service checks every field and names the one at fault."""
    per_label, labels, seed, version, model, codes, order, start, stop = selection
    labels = None if labels is None else list(labels)
    fields = _given(labels=labels, seed=seed, codes=_floats(codes), start=start, stop=stop)
    head = {"per_label": per_label, "format": format, "order": order}
    return {**head, **pick(config, model, version), **fields}


def _given(**fields: Any) -> dict[str, Any]:
    """The fields that are set; the service's defaults stand for the others."""
    return {name: value for name, value in fields.items() if value is not None}


def _floats(codes: Any) -> list[Any] | None:
    return None if codes is None else np.asarray(codes, dtype=np.float64).tolist()  # lists, tuples, arrays


# --- the calls (their signatures and documentation are Client's) ----------------------------------------


def generate(
    config: Config,
    label: int | str,
    n: int,
    seed: int | None,
    version: int | None,
    model: str | None,
    codes: Sequence[float] | Sequence[Sequence[float]] | None,
    traverse: dict[str, Any] | None = None,
) -> Call[np.ndarray]:
    fields = _given(seed=seed, codes=_floats(codes), traverse=traverse)
    body = {"label": label, "n": n, "format": "npy", **pick(config, model, version), **fields}
    images = yield Exchange(Request("POST", "/generate", body), Body(load_npy))
    expected = n * (traverse or {}).get("steps", 1)
    if images.ndim < 3 or len(images) != expected:
        got = f"{len(images)} images" if images.ndim else "no images"
        raise ArchiveError(f"the /generate response holds {got} {list(images.shape)}; asked for {expected}")
    return images


def traverse(
    config: Config,
    label: int | str,
    code: int | str,
    n: int,
    steps: int,
    seed: int | None,
    version: int | None,
    model: str | None,
    codes: Sequence[float] | Sequence[Sequence[float]] | None,
) -> Call[np.ndarray]:
    sweep = {"code": code, "steps": steps}
    images = yield from generate(config, label, n, seed, version, model, codes, sweep)
    return images.reshape(n, steps, *images.shape[1:])


def iter_dataset(config: Config, selection: Selection, batch_size: int) -> Call[None]:
    """Hands out ``(x, y)`` batches while the body streams."""
    yield Exchange(Request("POST", "/dataset", dataset_body(config, selection)), Batches(batch_size))


def dataset(config: Config, selection: Selection) -> Call[tuple[np.ndarray, np.ndarray]]:
    return (yield Exchange(Request("POST", "/dataset", dataset_body(config, selection)), Arrays()))


def save_dataset(
    config: Config, selection: Selection, path: str | os.PathLike[str], format: str, progress: bool
) -> Call[Path]:
    """``path`` appears only once the archive is whole: it streams into a hidden file beside it."""
    body = dataset_body(config, selection, format)
    target = Path(path)
    partial = target.with_name(f".{target.name}.part")
    try:
        yield Exchange(Request("POST", "/dataset", body), ArchiveFile(partial, target.name, progress))
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def model_info(config: Config, model: str | None, version: int | None) -> Call[dict[str, Any]]:
    fields = pick(config, model, version)
    if "model" not in fields:
        listing = yield Exchange(Request("GET", "/v1/models"), Body(json.loads))
        fields["model"] = listing["default"] or _only(listing)
    params = {"version": fields["version"]} if "version" in fields else None
    return (yield Exchange(Request("GET", f"/v1/models/{fields['model']}", params=params), Body(json.loads)))


def _only(listing: dict[str, Any]) -> str:
    names = [m["name"] for m in listing["models"]]
    if len(names) != 1:
        raise ServiceError(422, f"model: several models are loaded ({', '.join(names)}); name one", "model")
    return names[0]
