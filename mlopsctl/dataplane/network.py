"""The local network: where a task's address is reachable on this machine.

On Fargate every task has its own network interface; a load balancer target is the task's
private IP and its container port. Here every task listens on 127.0.0.1, one free port per
container port, and this table maps ``(private IP, container port)`` to it. The load
balancer and its health checks reach targets only through this table, so they never send
a packet beyond the loopback interface; an address not in it is unreachable.
"""

from __future__ import annotations

import socket
import threading

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


class LocalNetwork:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._routes: dict[tuple[str, int], int] = {}

    def attach(self, address: str, container_port: int, local_port: int) -> None:
        with self._lock:
            self._routes[(address, int(container_port))] = local_port

    def detach(self, address: str) -> None:
        with self._lock:
            for key in [k for k in self._routes if k[0] == address]:
                del self._routes[key]

    def resolve(self, address: str, port: int) -> tuple[str, int] | None:
        """The loopback address of ``address:port``, or None: unreachable."""
        with self._lock:
            local = self._routes.get((address, int(port)))
        return (LOOPBACK, local) if local is not None else None
