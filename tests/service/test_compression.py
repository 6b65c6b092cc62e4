"""service/http/compression.py: request bodies inflated within the limit, and which answers are gzipped."""

from __future__ import annotations

import gzip
import zlib

import pytest
from starlette.datastructures import Headers

from service.errors import RequestError
from service.http.compression import accepts_gzip, inflate

BODY = b'{"label": 3, "n": 2}' * 40


@pytest.mark.parametrize(
    ("encoding", "data"),
    [
        ("identity", BODY),
        ("", BODY),
        ("gzip", gzip.compress(BODY)),
        ("GZip ", gzip.compress(BODY)),
        ("x-gzip", gzip.compress(BODY)),
        ("deflate", zlib.compress(BODY)),
        ("gzip", gzip.compress(BODY[:300]) + gzip.compress(BODY[300:])),  # two members, as gzip allows
    ],
)
def test_inflate(encoding: str, data: bytes) -> None:
    assert inflate(data, encoding, len(BODY), "MAX_BODY_BYTES") == BODY


@pytest.mark.parametrize(
    ("encoding", "data", "status", "detail"),
    [
        ("gzip", gzip.compress(BODY), 413, "body: larger than MAX_BODY_BYTES (799 bytes) once decompressed"),
        ("gzip", gzip.compress(BODY[:400]) * 3, 413, "body: larger than MAX_BODY_BYTES (799 bytes)"),
        ("br", BODY, 415, "Content-Encoding: 'br' is not supported"),
        ("gzip, identity", BODY, 415, "Content-Encoding: 'gzip, identity' is not supported"),
        ("gzip", BODY, 400, "Content-Encoding: the body is not valid gzip data"),
        ("gzip", gzip.compress(BODY)[:-8], 400, "Content-Encoding: the gzip data ends early"),
        ("deflate", zlib.compress(BODY) + b"!", 400, "Content-Encoding: bytes after the end of the deflate"),
    ],
)
def test_refusals_name_the_part_at_fault(encoding: str, data: bytes, status: int, detail: str) -> None:
    with pytest.raises(RequestError) as refused:
        inflate(data, encoding, len(BODY) - 1 if status == 413 else len(BODY), "MAX_BODY_BYTES")
    assert refused.value.status == status and refused.value.detail.startswith(detail), refused.value.detail


def test_a_bomb_stops_one_byte_past_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    bomb = gzip.compress(bytes(64 << 20))  # 64 MiB of zeros in ~64 KB
    made: list[int] = []
    real = zlib.decompressobj

    def counting(*args):
        inflater = real(*args)

        class Counted:
            def __getattr__(self, name):
                return getattr(inflater, name)

            def decompress(self, data, max_length=0):
                out = inflater.decompress(data, max_length)
                made.append(len(out))
                return out

        return Counted()

    monkeypatch.setattr(zlib, "decompressobj", counting)
    with pytest.raises(RequestError) as refused:
        inflate(bomb, "gzip", 4096, "MAX_INFER_BODY_BYTES")
    assert refused.value.status == 413 and sum(made) == 4097


@pytest.mark.parametrize(
    ("accept", "gzip_ok"),
    [
        ("gzip", True),
        ("gzip, deflate, br", True),
        ("deflate, gzip;q=0.5", True),
        ("*", True),
        ("gzip;q=0", False),
        ("identity", False),
        ("", False),
        ("gzip;q=x", False),
    ],
)
def test_accepts_gzip(accept: str, gzip_ok: bool) -> None:
    assert accepts_gzip(Headers({"accept-encoding": accept})) is gzip_ok
