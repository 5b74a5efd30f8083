"""An OpenAI-compatible HTTP server on loopback for tests: the simulated model's answers over a real
socket, so the real ``openai`` client goes through its real HTTP stack (``OPENAI_BASE_URL``) and the
test counts, on the server's side, every request that reached it, and can hold one request open
until it says so (``hold``): the caller is then known to be inside that call."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx2

from services.simulated_llm import SimulatedLLMTransport

HOLD_LIMIT_S = 300.0  # a held request answers by itself after this long: a failed test never hangs


class OpenAIServer:
    """Serves ``POST /v1/chat/completions`` with the simulated model (streams too). ``bodies`` holds
    every request body received, ``authorizations`` their ``Authorization`` headers. With
    ``break_streams_after`` set, a streamed answer stops after that many events with an ``error``
    event carrying ``stream_error`` (what a provider sends when it fails mid-way). Every answer
    closes its connection."""

    def __init__(self, break_streams_after: int | None = None, stream_error: str = "upstream failure") -> None:
        self.bodies: list[dict] = []
        self.authorizations: list[str] = []  # the Authorization header of each request
        self._lock = threading.Lock()
        self._hold: Callable[[dict], bool] | None = None
        self.held = threading.Event()  # a request matching ``hold`` arrived and waits for ``release``
        self._released = threading.Event()
        model = SimulatedLLMTransport()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with server._lock:
                    server.bodies.append(json.loads(body or b"{}"))
                    server.authorizations.append(self.headers.get("Authorization", ""))
                    holding = server._hold is not None and server._hold(server.bodies[-1])
                    if holding:
                        server._hold = None
                if holding:
                    server.held.set()
                    server._released.wait(HOLD_LIMIT_S)
                answer = model.handle_request(httpx2.Request("POST", f"http://127.0.0.1{self.path}", content=body))
                content = answer.read()
                streamed = answer.headers.get("content-type", "").startswith("text/event-stream")
                if streamed and break_streams_after is not None:
                    events = content.split(b"\n\n")[:break_streams_after]
                    error = {"error": {"message": stream_error, "type": "server_error", "code": None}}
                    content = b"\n\n".join([*events, b"data: " + json.dumps(error).encode()]) + b"\n\n"
                self.send_response(answer.status_code)
                self.send_header("Content-Type", answer.headers.get("content-type", "application/json"))
                self.send_header("Content-Length", str(len(content)))
                # one request per connection: the client's pool keeps no socket open past the test
                self.send_header("Connection", "close")
                self.close_connection = True
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, name="openai-test-server", daemon=True)
        self._thread.start()

    def hold(self, matches: Callable[[dict], bool]) -> None:
        """Hold the next request whose body ``matches`` (counted on arrival) until ``release``."""
        with self._lock:
            self._hold = matches
        self.held.clear()
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    @property
    def requests(self) -> int:
        with self._lock:
            return len(self.bodies)

    def close(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=30)

    def __enter__(self) -> OpenAIServer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
