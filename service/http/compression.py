"""Compressed HTTP bodies, both ways.

Requests: a body sent with ``Content-Encoding: gzip`` (or ``deflate``, the zlib format, what tritonclient
sends for it) is inflated by the guard before the route sees it (:func:`inflate`), and the body limit
(MAX_BODY_BYTES, MAX_INFER_BODY_BYTES for inference) holds for the *decompressed* size: inflating stops
one byte past it, so a gzip bomb costs at most the limit in memory and is a 413 naming the body. Other
encodings are a 415, data that does not inflate a 400, both naming ``Content-Encoding``.

Responses: :class:`GZipResponses` compresses a whole (not streamed) JSON answer, and an Open Inference
Protocol binary tensor answer, when the client sends ``Accept-Encoding: gzip``. Images (PNG, .npy) and
archive streams go as they are: PNG is compressed already, and a stream is never held back to compress it.
"""

from __future__ import annotations

import gzip
import zlib

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import RequestError

#: ``Content-Encoding`` -> zlib's wbits for it.
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
#: Responses smaller than this are sent as they are: compressing them saves less than it costs.
MINIMUM_SIZE = 512
#: gzip level of responses: 1, like PNG_COMPRESS_LEVEL's default, since the service is CPU-bound.
LEVEL = 1


class UndecodableBody(RequestError):
    status = 400


class BodyTooLarge(RequestError):
    status = 413


class UnsupportedEncoding(RequestError):
    status = 415


def inflate(body: bytes, encoding: str, limit: int, setting: str) -> bytes:
    """``body`` decoded from ``encoding`` (``Content-Encoding``), refused once it inflates past ``limit``
    bytes (the setting named ``setting``); a gzip body may hold several members, as gzip allows."""
    name = encoding.strip().lower()
    if name in ("", "identity"):
        return body
    wbits = _WBITS.get(name)
    if wbits is None:
        raise UnsupportedEncoding(
            f"Content-Encoding: {encoding[:64]!r} is not supported; send gzip, deflate or identity",
            "Content-Encoding",
        )
    out = bytearray()
    data = body
    while True:
        inflater = zlib.decompressobj(wbits)
        try:
            out += inflater.decompress(data, limit + 1 - len(out))
        except zlib.error:
            raise UndecodableBody(
                f"Content-Encoding: the body is not valid {name} data", "Content-Encoding"
            ) from None
        if len(out) > limit:
            detail = (
                f"body: larger than {setting} ({limit} bytes) once decompressed (Content-Encoding: {name})"
            )
            raise BodyTooLarge(detail, "body")
        if not inflater.eof:
            raise UndecodableBody(f"Content-Encoding: the {name} data ends early", "Content-Encoding")
        data = inflater.unused_data
        if not data:
            return bytes(out)
        if wbits == zlib.MAX_WBITS:
            raise UndecodableBody(
                f"Content-Encoding: bytes after the end of the {name} data", "Content-Encoding"
            )


def accepts_gzip(headers: Headers) -> bool:
    """Whether ``Accept-Encoding`` lists gzip (or ``*``) with a non-zero quality."""
    for entry in headers.get("accept-encoding", "").split(","):
        coding, _, params = entry.partition(";")
        if coding.strip().lower() not in ("gzip", "*"):
            continue
        quality = params.strip().lower().removeprefix("q=")
        try:
            return not params.strip() or float(quality) > 0
        except ValueError:
            return False
    return False


def _compressible(headers: MutableHeaders) -> bool:
    media = headers.get("content-type", "").split(";")[0].strip().lower()
    binary_tensors = media == "application/octet-stream" and "inference-header-content-length" in headers
    return (media == "application/json" or binary_tensors) and "content-encoding" not in headers


class GZipResponses:
    """Pure ASGI: gzip a whole JSON (or binary tensor) response for a client that accepts gzip; anything
    streamed (``more_body``) or small passes untouched. ``Vary: Accept-Encoding`` on every response that
    could have been compressed, so caches keep the two forms apart."""

    def __init__(self, app: ASGIApp, minimum_size: int = MINIMUM_SIZE, level: int = LEVEL) -> None:
        self.app = app
        self.minimum_size = minimum_size
        self.level = level

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not accepts_gzip(Headers(scope=scope)):
            await self.app(scope, receive, send)
            return
        held: Message | None = None

        async def send_compressed(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start":
                held = message  # until the body says whether it comes whole
                return
            if held is None or message["type"] != "http.response.body":
                await send(message)
                return
            start, held = held, None
            headers = MutableHeaders(raw=list(start.get("headers", ())))
            body = message.get("body", b"")
            if not _compressible(headers):
                await send(start)
                await send(message)
                return
            headers.add_vary_header("Accept-Encoding")
            if message.get("more_body", False) or len(body) < self.minimum_size:
                await send({**start, "headers": headers.raw})
                await send(message)
                return
            compressed = gzip.compress(body, compresslevel=self.level, mtime=0)
            headers["Content-Encoding"] = "gzip"
            headers["Content-Length"] = str(len(compressed))
            await send({**start, "headers": headers.raw})
            await send({"type": "http.response.body", "body": compressed, "more_body": False})

        await self.app(scope, receive, send_compressed)
