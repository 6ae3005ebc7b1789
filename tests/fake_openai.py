"""A real OpenAI-compatible chat server on 127.0.0.1 for the tests, with injectable faults
(it also answers Anthropic's /v1/messages in that API's shape).

The last user text of a request decides the answer: the text after "reply ". Directives in
the prompt inject faults, counted per prompt: "@429x2" answers the first two attempts with
429 and Retry-After, likewise "@500x1", "@503x1", "@timeoutx1" (sleeps past the client's
timeout), "@malformedx1" (a body that is not JSON), "@dropx1" (closes the connection
without answering); without "xN" the fault is permanent ("@500", "@400").

``kill()`` makes it stop answering for good, as a crashed replica does: the listening
socket closes (new connections are refused) and every open connection is dropped, so
keep-alive connections a client pooled fail too. A new ``FakeOpenAI(port=old.port)`` is the
replica restarted. ``die_after=N`` kills it when its N+1-th request arrives (that request
is dropped). ``answered`` counts the prompts it answered with 200.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_DIRECTIVE = re.compile(r"@(429|500|503|529|400|timeout|malformed|drop)(?:x(\d+))?")


class FakeOpenAI:
    def __init__(
        self, delay_s: float = 0.0, retry_after: str = "0.05", timeout_sleep_s: float = 1.5, port: int = 0
    ) -> None:
        self.delay_s = delay_s
        self.retry_after = retry_after
        self.timeout_sleep_s = timeout_sleep_s
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.attempts: dict[str, list[float]] = defaultdict(list)
        self.in_flight = 0
        self.max_in_flight = 0
        self.healed = False
        self.on_request: Any = None  # called with the number of earlier requests
        self.answered: dict[str, int] = defaultdict(int)
        self.die_after: int | None = None
        self.dead = False
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with server._lock:
                    server._connections.append(self.connection)

            def handle(self) -> None:
                try:
                    super().handle()
                except OSError:
                    if not server.dead:  # a killed server's connections fail: expected
                        raise

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                server._handle(self)

            def do_GET(self) -> None:  # noqa: N802
                healthy = self.path == "/health"
                payload = b"{}" if healthy else b"not found"
                self.send_response(200 if healthy else 404)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def kill(self) -> None:
        """Stop answering: refuse new connections and drop the open ones."""
        with self._lock:
            if self.dead:
                return
            self.dead = True
            connections = list(self._connections)
        self.httpd.shutdown()
        self.httpd.server_close()
        for connection in connections:
            with contextlib.suppress(OSError):  # closed already
                connection.shutdown(socket.SHUT_RDWR)

    def calls(self, prompt_part: str) -> int:
        return sum(len(v) for k, v in self.attempts.items() if prompt_part in k)

    def _prompt(self, body: dict[str, Any]) -> str:
        content = body["messages"][-1]["content"]
        if isinstance(content, str):
            return content
        return "".join(part.get("text", "") for part in content if part.get("type") == "text")

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length", 0))
        body = json.loads(handler.rfile.read(length))
        prompt = self._prompt(body)
        dying = self.die_after is not None and len(self.bodies) >= self.die_after
        if self.dead or dying:
            self.kill()  # gone before anyone can probe it (a no-op when dead already)
            handler.close_connection = True
            return
        with self._lock:
            if self.on_request is not None:
                self.on_request(len(self.bodies))
            self.bodies.append(body)
            self.headers.append(dict(handler.headers))
            self.attempts[prompt].append(time.monotonic())
            attempt = len(self.attempts[prompt])
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay_s:
                time.sleep(self.delay_s)
            match = _DIRECTIVE.search(prompt)
            fault = None
            if match and not self.healed:
                times = int(match.group(2)) if match.group(2) else None
                if times is None or attempt <= times:
                    fault = match.group(1)
            self._respond(handler, prompt, body, fault, anthropic=handler.path.endswith("/v1/messages"))
        finally:
            with self._lock:
                self.in_flight -= 1

    def _stream(self, handler: BaseHTTPRequestHandler, answer: str, usage: dict[str, int]) -> None:
        """Server-sent events, one per character of the answer, then usage and [DONE]."""
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Connection", "close")
        handler.end_headers()
        for char in answer:
            event = {"choices": [{"index": 0, "delta": {"content": char}, "finish_reason": None}]}
            handler.wfile.write(b"data: " + json.dumps(event).encode() + b"\n\n")
            handler.wfile.flush()
        final = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": usage}
        handler.wfile.write(b"data: " + json.dumps(final).encode() + b"\n\ndata: [DONE]\n\n")
        handler.wfile.flush()
        handler.close_connection = True

    def _respond(
        self,
        handler: BaseHTTPRequestHandler,
        prompt: str,
        body: dict[str, Any],
        fault: str | None,
        anthropic: bool,
    ) -> None:
        if fault == "drop":
            handler.connection.shutdown(socket.SHUT_RDWR)
            handler.close_connection = True
            return
        if fault == "timeout":
            time.sleep(self.timeout_sleep_s)
        if fault in ("429", "500", "503", "529", "400"):
            payload = json.dumps({"error": {"message": f"injected {fault}"}}).encode()
            handler.send_response(int(fault))
            if fault in ("429", "503", "529"):
                handler.send_header("Retry-After", self.retry_after)
        elif fault == "malformed":
            payload = b"{not json"
            handler.send_response(200)
        else:
            answer = prompt.rpartition("reply ")[2].strip().split(" @")[0]
            usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": 1}
            if body.get("stream") and not anthropic:
                self._stream(handler, answer, usage)
                return
            if anthropic:
                reply: dict[str, Any] = {
                    "type": "message",
                    "content": [{"type": "text", "text": answer}],
                    "stop_reason": "end_turn",
                    "usage": {"input_tokens": usage["prompt_tokens"], "output_tokens": 1},
                }
            else:
                message = {"role": "assistant", "content": answer}
                reply = {
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                    "usage": usage,
                }
            payload = json.dumps(reply).encode()
            handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)
        handler.wfile.flush()
        if fault is None:
            with self._lock:
                self.answered[prompt] += 1  # counted once it is on the wire
