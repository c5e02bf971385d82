"""A tiny HTTP app that task definitions run in place of the serving model (it starts in
milliseconds), configured by its environment like a container:

    HOST, PORT      where to listen (the data plane sets both)
    VERSION         returned by GET / and POST /predict
    READY           status of GET /ready (200: healthy; 503: never ready)
    EXIT_AT_START   exit at once with this code (a crash on start)
    SLOW_SECONDS    GET /slow answers after this long (draining tests)

SIGTERM stops it after the requests in flight, as a well-behaved server does.
"""

import json
import os
import signal
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


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 2  # an idle keep-alive connection is closed, so shutdown never waits on it

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


server = ThreadingHTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Handler)
server.daemon_threads = False  # finish the requests in flight on shutdown
signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
print(f"{VERSION} listening on {os.environ['HOST']}:{os.environ['PORT']}", flush=True)
server.serve_forever()
server.server_close()
print("stopped", flush=True)
