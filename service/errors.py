"""The requests the service refuses, below both the data plane (which raises them) and the HTTP layer
(which maps them to status codes and its error bodies, :mod:`service.http.errors`)."""

from __future__ import annotations


class RequestError(Exception):
    """A request the service refuses; ``detail`` reads ``"<field>: <what is wrong>"``."""

    status = 422

    def __init__(self, detail: str, field: str | None = None, retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.retry_after = retry_after


class ModelNotFound(RequestError):
    status = 404


class NotReady(RequestError):
    status = 503
