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

from starlette.requests import ClientDisconnect, Request


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


async def read_json_body(request: Request, limit: int) -> bytes:
    headers = request.headers
    content_type = headers.get("content-type", "")
    if not _is_json(content_type):
        raise BodyError(
            415,
            f"Content-Type must be application/json, not {content_type[:80]!r}"
            if content_type
            else "Content-Type must be application/json (the header is missing)",
        )
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyError(413, f"the request body is {declared} bytes; the limit is {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BodyError(413, f"the request body is over the limit of {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise ClientGone() from None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
