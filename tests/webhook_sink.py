"""A webhook receiver for tests: a real HTTP server on loopback that records what it is sent."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WAIT = 60.0
URL_SECRET = "T000/B000/hookCANARYsecret"  # webhook URLs hold secrets in their path (Slack's do)


class Sink:
    """A webhook receiver: records bodies; answers with the statuses queued in ``answers`` (then 200);
    ``hold`` makes it wait before answering."""

    def __init__(self):
        self.bodies: list[dict] = []
        self.answers: list[int] = []
        self.hold = threading.Event()
        self.hold.set()
        self.received = threading.Condition()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                sink.hold.wait(WAIT)
                status = sink.answers.pop(0) if sink.answers else 200
                if status == 200:
                    with sink.received:
                        sink.bodies.append(json.loads(body))
                        sink.received.notify_all()
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/services/{URL_SECRET}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int) -> list[dict]:
        with self.received:
            assert self.received.wait_for(lambda: len(self.bodies) >= count, timeout=WAIT), self.bodies
            return list(self.bodies)

    def close(self):
        self.hold.set()
        self.server.shutdown()
        self.server.server_close()
