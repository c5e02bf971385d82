"""Reading a request body safely: content type, size limit while reading, disconnects.

- The content type must be JSON (``application/json``, parameters such as ``charset``
  allowed, or a ``+json`` type): anything else is 415 before a byte is read.
- A declared ``Content-Length`` over the limit is 413 at once; a body without one (chunked)
  is counted while it arrives and refused with 413 as soon as it passes the limit, so
  memory never holds more than the limit, whatever the client sends.
- A client that goes away mid-body raises :class:`ClientGone`: not an error, nothing to
  answer (the service logs it at info level).

Slow clients are cut off by the HTTP protocol (:mod:`serving.protocol`): a request must
arrive within the read timeout of its first byte.
"""

from __future__ import annotations

from starlette.types import Receive, Scope


class BodyError(Exception):
    """A body refused before parsing: ``status`` (413, 415) and a message for people."""

    def __init__(self, status: int, message: str):
        self.status = status
        self.message = message
        super().__init__(message)


class ClientGone(Exception):
    """The client disconnected before the request was complete."""


def _is_json(content_type: str) -> bool:
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


async def read_json_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The request's body (raw ASGI: the fast path and FastAPI routes share it)."""
    headers = scope["headers"]
    content_type = _header(headers, b"content-type") or ""
    if not _is_json(content_type):
        raise BodyError(
            415,
            f"Content-Type must be application/json, not {content_type[:80]!r}"
            if content_type
            else "Content-Type must be application/json (the header is missing)",
        )
    declared = _header(headers, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyError(413, f"the request body is {declared} bytes; the limit is {limit} bytes")
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientGone()
    body: bytes = message.get("body", b"")
    if len(body) > limit:
        raise BodyError(413, f"the request body is over the limit of {limit} bytes")
    if not message.get("more_body", False):
        return body  # the usual case: the whole body in one message
    chunks = [body]
    size = len(body)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyError(413, f"the request body is over the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
