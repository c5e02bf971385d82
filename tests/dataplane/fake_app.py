"""A tiny HTTP app that task definitions run in place of the serving model (it starts in
milliseconds), configured by its environment like a container:

    HOST, PORT      where to listen (the data plane sets both)
    VERSION         returned by GET / and POST /predict
    READY           status of GET /ready (200: healthy; 503: never ready)
    EXIT_AT_START   exit at once with this code (a crash on start)
    SLOW_SECONDS    GET /slow answers after this long (draining tests)
    LISTEN_AFTER    seconds before it listens (a slow start: imports, a model download)

SIGTERM stops it after the requests in flight, as a well-behaved server does.
"""

import contextlib
import json
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

if os.environ.get("EXIT_AT_START"):
    print("crashing at start", flush=True)
    sys.exit(int(os.environ["EXIT_AT_START"]))

VERSION = os.environ.get("VERSION", "v0")
READY = int(os.environ.get("READY", "200"))
SLOW = float(os.environ.get("SLOW_SECONDS", "1"))


STOPPING = threading.Event()
OPEN: set["Handler"] = set()  # connections, so that SIGTERM can close the idle ones
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 2  # an idle keep-alive connection is closed, so shutdown never waits on it
    busy = False

    def setup(self):
        super().setup()
        with LOCK:
            OPEN.add(self)

    def finish(self):
        with LOCK:
            OPEN.discard(self)
        super().finish()

    def parse_request(self):
        self.busy = True  # a request line arrived: it is answered before the connection closes
        return super().parse_request()

    def handle_one_request(self):
        super().handle_one_request()
        self.busy = False
        if STOPPING.is_set():
            self.close_connection = True

    def _send(self, status, doc):
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/ready":
            self._send(READY, {"ready": READY == 200})
        elif self.path == "/slow":
            time.sleep(SLOW)
            self._send(200, {"version": VERSION, "slow": True})
        else:
            self._send(200, {"version": VERSION})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self._send(200, {"version": VERSION})

    def log_message(self, fmt, *args):
        print(f"{self.command} {self.path}", flush=True)


time.sleep(float(os.environ.get("LISTEN_AFTER", "0")))
server = ThreadingHTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Handler)
server.daemon_threads = False  # finish the requests in flight on shutdown


def _stop(*_):
    """Stop as uvicorn does: no new connections, idle keep-alive ones closed at once, the
    requests in flight answered (an idle connection would otherwise hold shutdown for up to
    its timeout, past a short stopTimeout)."""
    STOPPING.set()
    with LOCK:
        idle = [h for h in OPEN if not h.busy]
    for handler in idle:
        with contextlib.suppress(OSError):
            handler.connection.shutdown(socket.SHUT_RDWR)
    threading.Thread(target=server.shutdown).start()


signal.signal(signal.SIGTERM, _stop)
print(f"{VERSION} listening on {os.environ['HOST']}:{os.environ['PORT']}", flush=True)
server.serve_forever()
server.server_close()
print("stopped", flush=True)
