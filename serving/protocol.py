"""uvicorn's HTTP protocol with a read timeout, against slow clients.

uvicorn times out idle keep-alive connections (``timeout_keep_alive``) but not a client
that opens a connection and sends nothing, or drips its headers or body a byte at a
time: each such connection would hold a slot forever. This protocol gives every request
``read_timeout`` seconds, from the connection's start or from the request's first byte,
to arrive completely; a client slower than that is disconnected (logged at info level:
a slow client is not an error of the service). The application sees the disconnect as
a client that went away.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = structlog.get_logger("serving.http")


class TimedHttpToolsProtocol(HttpToolsProtocol):
    #: Set by :func:`with_read_timeout` on a subclass.
    read_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_timer: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        self._disarm()
        self._read_timer = self.loop.call_later(self.read_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _too_slow(self) -> None:
        self._read_timer = None
        if not self.transport.is_closing():
            log.info("closed a slow client", client=self.client, timeout=self.read_timeout)
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # a new connection must start a request in time

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()  # and each request must be complete in time

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def with_read_timeout(seconds: float) -> type[TimedHttpToolsProtocol]:
    """The protocol class for uvicorn's ``http=`` setting, with this read timeout."""
    return type("TimedHttpToolsProtocol", (TimedHttpToolsProtocol,), {"read_timeout": seconds})
