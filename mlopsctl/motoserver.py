"""moto's server with S3's conditional writes made atomic.

    python -m mlopsctl.motoserver -H 127.0.0.1 -p 4566

moto checks ``If-None-Match: *`` (and ``If-Match``) on PutObject and then stores the
object as two separate steps, in a threaded server: two concurrent creates of one key can
both pass the check and both answer 200 (seen under 16 threads). AWS S3 guarantees one
winner, and the promotion log (:mod:`mlops_core.promotion_log`) relies on it, so the local
endpoint serialises those requests: every PUT that carries a condition runs under one
lock, and so does every DELETE that carries one (an ownership claim is released with
``If-Match``, :mod:`mlops_core.claims`). Unconditional requests run as before,
concurrently.
"""

from __future__ import annotations

import argparse
import threading
from collections.abc import Callable, Iterable
from typing import Any

CONDITION_HEADERS = ("HTTP_IF_NONE_MATCH", "HTTP_IF_MATCH")


class SerialisedConditionalWrites:
    """WSGI middleware: conditional PUTs and DELETEs one at a time, the rest passed
    straight on."""

    def __init__(self, app: Callable[..., Iterable[bytes]]):
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") not in ("PUT", "DELETE") or not any(
            environ.get(h) for h in CONDITION_HEADERS
        ):
            return self.app(environ, start_response)
        with self.lock:
            # The whole response is produced under the lock: moto may store lazily.
            chunks = self.app(environ, start_response)
            try:
                return [b"".join(chunks)]
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()


def _cache_service_list() -> None:
    """moto's dispatcher asks for its list of services twice per request, and that list
    is an ``os.listdir`` plus one ``stat`` per service folder (some 200): a fifth of an
    idle data plane's CPU went there. The folders do not change while the server runs.
    Calling this again lists the cached tuple: harmless."""
    from moto import backends

    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules


def dispatcher() -> Any:
    """moto's own server application: every service on one endpoint, as moto.server."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    _cache_service_list()
    return DomainDispatcherApplication(create_backend_app)


def wsgi_app() -> SerialisedConditionalWrites:
    """moto's server application, its conditional writes serialised."""
    app = dispatcher()
    app.debug = True  # as moto.server sets it
    return SerialisedConditionalWrites(app)


def main(argv: list[str] | None = None) -> None:
    """Serve like ``python -m moto.server -H HOST -p PORT`` (moto's own request handler)."""
    import os
    import signal
    import sys

    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from werkzeug.serving import run_simple

    parser = argparse.ArgumentParser(prog="python -m mlopsctl.motoserver", description=__doc__)
    parser.add_argument("-H", "--host", default="127.0.0.1", help="Address to bind.")
    parser.add_argument("-p", "--port", type=int, required=True, help="Port to listen on.")
    args = parser.parse_args(argv)
    os.environ.setdefault("MOTO_PORT", str(args.port))  # moto builds some URLs with it
    # Exit 0 on SIGTERM, as moto.server does.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(0))
    run_simple(
        args.host,
        args.port,
        wsgi_app(),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
