"""Responses a broken or hostile server could send (issue #32 row 12), without a server: every malformed
archive is one error type, :class:`ArchiveError`, with a clear message (never numpy's ValueError,
OverflowError or MemoryError); ``x``, ``y`` and ``seeds`` agree on their row count; and a Retry-After
is read strictly (ASCII digits or an HTTP-date), anything else falling back to the default back-off."""

from __future__ import annotations

import asyncio
import io
import zipfile
from collections.abc import Callable

import httpx
import numpy as np
import pytest

from cgan_client import ArchiveError, AsyncClient, Client, Config, _common
from cgan_client import client as client_module
from service import imaging


def _npy(header: str, data: bytes = b"") -> bytes:
    text = header.encode("latin1")
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text + data


def _good(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


class _Stream(io.RawIOBase):
    """Unseekable, as the service's output is: zipfile writes each member's sizes after it."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # type: ignore[no-untyped-def]
        self.data += b
        return len(b)


def _npz(members: dict[str, bytes]) -> bytes:
    out = _Stream()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, raw in members.items():
            with archive.open(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)), "w") as f:
                f.write(raw)
    return bytes(out.data)


def _answering(content: bytes, *before: tuple[int, dict[str, str]]) -> Callable:
    """A handler answering ``before`` (status, headers) in turn, then 200 with ``content``."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) <= len(before):
            status, headers = before[len(seen) - 1]
            raw = {name: value.encode() for name, value in headers.items()}  # as sent: any bytes
            return httpx.Response(status, headers=raw, json={"detail": "overloaded: retry later"})
        return httpx.Response(200, content=content)

    return handler


def _client(handler: Callable) -> Client:
    return Client("http://test", transport=httpx.MockTransport(handler))


IMAGES = np.zeros((2, 28, 28), np.uint8)

BAD_NPY = {
    "object dtype": (
        _npy("{'descr': '|O', 'fortran_order': False, 'shape': (2,)}", bytes(16)),
        "not numbers",
    ),
    "negative shape": (_npy("{'descr': '|u1', 'fortran_order': False, 'shape': (-2, 28, 28)}"), "shape"),
    "infinite shape": (
        _npy("{'descr': '|u1', 'fortran_order': False, 'shape': (float('inf'), 28)}"),
        "header",
    ),
    "36 PiB": (
        _npy("{'descr': '|u1', 'fortran_order': False, 'shape': (2, 1099511627775, 16384)}"),
        "bytes",
    ),
    "too big for numpy": (
        _npy("{'descr': '|u1', 'fortran_order': False, 'shape': (2, 1099511627775, 1099511627775)}"),
        "bytes",
    ),
    "short data": (_good(IMAGES)[:-5], "bytes"),
    "data to spare": (_good(IMAGES) + b"extra", "bytes"),
    "not npy": (b"<html>busy</html>", "not a .npy"),
    "version 9": (b"\x93NUMPY\x09\x00" + bytes(100), "version"),
    "fortran": (
        _npy("{'descr': '|u1', 'fortran_order': True, 'shape': (2, 28, 28)}", bytes(1568)),
        "Fortran",
    ),
    "three images for two": (_good(np.zeros((3, 28, 28), np.uint8)), "3 images"),
    "no rows": (_good(np.zeros((), np.uint8)), "images"),
}


@pytest.mark.parametrize("case", sorted(BAD_NPY))
def test_a_malformed_generate_response_is_an_archive_error(case: str) -> None:
    content, words = BAD_NPY[case]
    with _client(_answering(content)) as client, pytest.raises(ArchiveError) as raised:
        client.generate(1, 2, seed=0)
    assert words in str(raised.value) and "\n" not in str(raised.value), raised.value


def test_a_good_generate_response_still_loads_and_is_writable() -> None:
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    with _client(_answering(_good(images))) as client:
        got = client.generate(1, 2, seed=0)
    assert np.array_equal(got, images) and got.flags.writeable


def test_a_traverse_response_of_the_wrong_size_is_an_archive_error() -> None:
    with _client(_answering(_good(np.zeros((5, 28, 28), np.uint8)))) as client:
        with pytest.raises(ArchiveError, match="5 images"):
            client.traverse(1, 0, 2, steps=3, seed=0)
        assert client.traverse(1, 0, 5, steps=1, seed=0).shape == (5, 1, 28, 28)


def test_the_async_client_refuses_alike() -> None:
    async def scenario() -> None:
        transport = httpx.MockTransport(_answering(BAD_NPY["negative shape"][0]))
        async with AsyncClient("http://test", transport=transport) as client:
            await client.generate(1, 2, seed=0)

    with pytest.raises(ArchiveError, match="shape"):
        asyncio.run(scenario())


def _dataset_npz(x: bytes, y: np.ndarray, seeds: np.ndarray) -> bytes:
    return _npz({"order": _good(np.array("shuffled")), "y": _good(y), "seeds": _good(seeds), "x": x})


@pytest.mark.parametrize(
    "x,y,seeds,words",
    [
        (_good(np.zeros((10, 28, 28), np.uint8)), np.zeros(20, np.int64), np.arange(20), "10 rows"),
        (_good(np.zeros((10, 28, 28), np.uint8)), np.zeros(10, np.int64), np.arange(20), "10 rows"),
        (
            _npy("{'descr': '|u1', 'fortran_order': False, 'shape': (10, 1099511627775, 1099511627775)}"),
            np.zeros(10, np.int64),
            np.arange(10),
            "bytes",
        ),  # fmt: skip
        (
            _npy("{'descr': '|u1', 'fortran_order': False, 'shape': (10, 1099511627775, 16384)}"),
            np.zeros(10, np.int64),
            np.arange(10),
            "bytes",
        ),  # fmt: skip
    ],
    ids=["y-20-rows", "seeds-20-rows", "x-too-big-for-numpy", "x-of-160-PiB"],
)
def test_a_malformed_dataset_is_an_archive_error(x: bytes, y, seeds, words: str) -> None:
    content = _dataset_npz(x, y, seeds)
    with _client(_answering(content)) as client:
        with pytest.raises(ArchiveError) as raised:
            client.dataset(10)
        assert words in str(raised.value), raised.value
        with pytest.raises(ArchiveError):
            list(client.iter_dataset(10))


def _delay(value: str, attempt: int = 1) -> float | None:
    response = httpx.Response(503, headers={"Retry-After": value.encode()})
    return _common.retry_delay(response, attempt, Config("http://test"))


@pytest.mark.parametrize(
    "value",
    [
        "²",
        "١٢",
        "１２",
        "12.5",
        "-3",
        "1e3",
        "0x10",
        "Wed, 21 Oct 99999 07:28:00 GMT",
        "Mon, 32 Foo",
        "\u00a0",
    ],
)
def test_a_retry_after_that_is_neither_digits_nor_a_date_falls_back_to_the_back_off(value: str) -> None:
    assert _delay(value) == 1.0  # 0.5 * 2**attempt


def test_a_client_retries_after_a_superscript_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(client_module.time, "sleep", slept.append)
    handler = _answering(_good(IMAGES), (503, {"Retry-After": "²"}), (429, {"Retry-After": "3"}))
    with _client(handler) as client:
        assert client.generate(1, 2, seed=0).shape == (2, 28, 28)
    assert slept == [0.5, 3.0]


def test_ascii_digits_and_dates_still_set_the_wait() -> None:
    assert _delay("7") == 7.0 and _delay(" 0 ") == 0.0
    assert _delay("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert _delay("9" * 400) == 30.0  # capped by max_retry_wait


def test_the_service_npy_header_is_what_the_client_reads() -> None:
    # The client parses the service's own header writer, not only numpy's.
    raw = imaging.npy_header(np.dtype(np.uint8), (2, 28, 28)) + bytes(2 * 28 * 28)
    with _client(_answering(raw)) as client:
        assert client.generate(1, 2, seed=0).shape == (2, 28, 28)
