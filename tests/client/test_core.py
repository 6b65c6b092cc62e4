"""Client and AsyncClient carry the same calls (cgan_client._core), without a server: a fake transport
answers, both clients send the same requests and hand back the same values, and a download that breaks
off leaves no file behind in either."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from cgan_client import AsyncClient, Client

X = np.arange(6 * 28 * 28, dtype=np.uint8).reshape(6, 28, 28)
Y = np.array([1, 2, 1, 2, 1, 2], np.int64)
MODELS = {"default": "digits", "models": [{"name": "digits"}]}
CARD = {"name": "digits", "version": 2, "card": {"class_names": list("0123456789")}}


class _Stream(io.RawIOBase):
    """Unseekable, as the service's output is: zipfile writes each member's sizes after it."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # type: ignore[no-untyped-def]
        self.data += b
        return len(b)


def _npz() -> bytes:
    out = _Stream()
    with zipfile.ZipFile(out, "w") as archive:
        for name, array in {"order": np.array("shuffled"), "y": Y, "seeds": np.arange(6), "x": X}.items():
            with archive.open(f"{name}.npy", "w") as member:
                np.save(member, array)
    return bytes(out.data)


def _npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


class _Broken(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body that stops after its first chunk, as a dropped connection does."""

    def __iter__(self) -> Iterator[bytes]:
        yield b"PK\x03\x04 the start of an archive"
        raise httpx.ReadError("connection dropped")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"PK\x03\x04 the start of an archive"
        raise httpx.ReadError("connection dropped")


def _service(seen: list[tuple[str, str, Any]], broken: bool = False) -> Callable:
    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else dict(request.url.params)
        seen.append((request.method, request.url.path, body))
        if request.url.path == "/generate":
            n = body["n"] * body.get("traverse", {}).get("steps", 1)
            return httpx.Response(200, content=_npy(np.resize(X, (n, 28, 28))))
        if request.url.path == "/dataset":
            if broken:
                return httpx.Response(200, stream=_Broken())
            return httpx.Response(200, content=_npz(), headers={"x-images": "6"})
        return httpx.Response(200, json=MODELS if request.url.path == "/v1/models" else CARD)

    return handler


def _every_call(api: Client, tmp: Path) -> list[Any]:
    return [
        api.generate(3, 2, seed=1, codes=[0.5]),
        api.traverse(3, "slant", 2, steps=3, seed=4),
        list(api.iter_dataset(3, labels=[1, 2], seed=0, model="m", codes=(1,), batch_size=4, start=2)),
        api.dataset(3, labels=[1, 2], seed=0, version=1, order="by_class", start=0, stop=6),
        api.save_dataset(tmp / "set.npz", 3, format="npz", labels=[1, 2], progress=False).read_bytes(),
        api.model_info(version=2),
    ]


async def _every_call_async(api: AsyncClient, tmp: Path) -> list[Any]:
    return [
        await api.generate(3, 2, seed=1, codes=[0.5]),
        await api.traverse(3, "slant", 2, steps=3, seed=4),
        [
            b
            async for b in api.iter_dataset(
                3, labels=[1, 2], seed=0, model="m", codes=(1,), batch_size=4, start=2
            )
        ],
        await api.dataset(3, labels=[1, 2], seed=0, version=1, order="by_class", start=0, stop=6),
        (
            await api.save_dataset(tmp / "set.npz", 3, format="npz", labels=[1, 2], progress=False)
        ).read_bytes(),
        await api.model_info(version=2),
    ]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and np.array_equal(a, b)
    return a == b


def test_both_clients_send_the_same_requests_and_answer_alike(tmp_path: Path) -> None:
    (tmp_path / "sync").mkdir(), (tmp_path / "async").mkdir()
    sync_seen: list[tuple[str, str, Any]] = []
    transport = httpx.MockTransport(_service(sync_seen))
    with Client("http://test", version=2, transport=transport) as api:
        answers = _every_call(api, tmp_path / "sync")  # type: ignore[arg-type]

    async_seen: list[tuple[str, str, Any]] = []

    async def scenario() -> list[Any]:
        transport = httpx.MockTransport(_service(async_seen))
        async with AsyncClient("http://test", version=2, transport=transport) as api:
            return await _every_call_async(api, tmp_path / "async")

    assert _same(asyncio.run(scenario()), answers)
    assert async_seen == sync_seen
    assert answers[1].shape == (2, 3, 28, 28)
    assert [len(x) for x, _ in answers[2]] == [4, 2] and _same(answers[3], (X, Y))
    assert [path for _, path, _ in sync_seen] == [
        "/generate", "/generate", "/dataset", "/dataset", "/dataset", "/v1/models", "/v1/models/digits"
    ]  # fmt: skip
    # every argument in its field, the client's pinned version where the call names none
    assert [body for _, _, body in sync_seen[2:5]] == [
        {"per_label": 3, "format": "npz", "order": "shuffled", "model": "m", "version": 2, "labels": [1, 2],
         "seed": 0, "codes": [1.0], "start": 2},
        {"per_label": 3, "format": "npz", "order": "by_class", "version": 1, "labels": [1, 2], "seed": 0,
         "start": 0, "stop": 6},
        {"per_label": 3, "format": "npz", "order": "shuffled", "version": 2, "labels": [1, 2]},
    ]  # fmt: skip
    assert sync_seen[0][2] == {"label": 3, "n": 2, "format": "npy", "version": 2, "seed": 1, "codes": [0.5]}
    assert sync_seen[6][2] == {"version": "2"}


@pytest.mark.parametrize("sync", [True, False], ids=["Client", "AsyncClient"])
def test_a_broken_download_leaves_no_file(tmp_path: Path, sync: bool) -> None:
    transport = httpx.MockTransport(_service([], broken=True))
    target = tmp_path / "set.npz"
    with pytest.raises(httpx.ReadError):
        if sync:
            with Client("http://test", transport=transport) as api:
                api.save_dataset(target, 3, progress=False)
        else:

            async def scenario() -> None:
                async with AsyncClient("http://test", transport=transport) as api:
                    await api.save_dataset(target, 3, progress=False)

            asyncio.run(scenario())
    assert list(tmp_path.iterdir()) == []
