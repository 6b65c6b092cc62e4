"""uvicorn's httptools protocol with the connection limits it lacks (``python -m service`` uses it):

* the request line plus headers may be at most ``max_header_bytes`` (431, then close): httptools itself
  accepts megabytes of headers;
* they must arrive within ``header_timeout`` of the connection opening or of the previous response
  (408 if a request had begun, else a silent close): a slowloris holds no connection for long;
* the body must arrive within ``body_timeout`` of the headers (408 and close): a partial body ties up no
  slot (the guard waits for the whole body before a request is admitted);
* a response write the client does not drain for ``send_timeout`` closes the connection: a ``/dataset``
  client that stops reading frees its concurrency slot (the stream is cancelled as on any disconnect).

Each limit answers before the app sees anything or, for the send timeout, looks to the app like the client
left, so nothing here needs the app's help.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(
        self,
        *args: Any,
        max_header_bytes: int,
        header_timeout: float,
        body_timeout: float,
        send_timeout: float,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.max_header_bytes = max_header_bytes
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.send_timeout = send_timeout
        self._header_bytes = 0
        self._in_request = False
        self._refused = False
        self._timer: asyncio.TimerHandle | None = None
        self._send_timer: asyncio.TimerHandle | None = None

    # --- timers

    def _arm(self, seconds: float, status: int | None) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._expired, status)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self, status: int | None) -> None:
        self._timer = None
        response_started = self.cycle is not None and self.cycle.response_started
        if status is not None and not response_started and not self.transport.is_closing():
            self._refuse(status, "timed out")
        elif not self.transport.is_closing():
            self.transport.close()

    def _refuse(self, status: int, why: str) -> None:
        """Answer ``status`` without the app and close; later bytes on this connection are ignored."""
        self._refused = True
        self._disarm()
        body = f"{status} {_REASONS[status].decode()}: {why}\n".encode()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, _REASONS[status], len(body), body)
        )
        self.transport.close()
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True  # the app, if it started, hears a disconnect
            self.cycle.message_event.set()

    # --- connection and parser callbacks

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout, None)  # an idle new connection is closed silently

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        self._in_request = True
        self._arm(self.header_timeout, 408)

    def on_url(self, url: bytes) -> None:
        if self._count(len(url)):
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._count(len(name) + len(value) + 4):
            super().on_header(name, value)

    def _count(self, size: int) -> bool:
        if self._refused:
            return False
        self._header_bytes += size
        if self._header_bytes > self.max_header_bytes:
            self._refuse(431, f"request line and headers exceed {self.max_header_bytes} bytes")
            return False
        return True

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._arm(self.body_timeout, 408)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        self._in_request = False
        super().on_response_complete()
        if not self.transport.is_closing() and not self.pipeline:
            # uvicorn's keep-alive timer covers the idle time; ours covers a request that then starts slowly.
            self._disarm()

    # --- flow control: a client that stops reading

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._send_timer is None:
            self._send_timer = self.loop.call_later(self.send_timeout, self._send_expired)

    def resume_writing(self) -> None:
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None
        super().resume_writing()

    def _send_expired(self) -> None:
        self._send_timer = None
        log.info("closing a connection whose client read nothing for %.1fs", self.send_timeout)
        # abort(): close() would wait to flush the very buffer the client is not reading.
        self.transport.abort()


def limited_protocol(
    *, max_header_bytes: int, header_timeout: float, body_timeout: float, send_timeout: float
) -> functools.partial[LimitedHttpToolsProtocol]:
    """The protocol factory for ``uvicorn.Config(http=...)``."""
    return functools.partial(
        LimitedHttpToolsProtocol,
        max_header_bytes=max_header_bytes,
        header_timeout=header_timeout,
        body_timeout=body_timeout,
        send_timeout=send_timeout,
    )
