"""A loopback stand-in for vLLM's chat endpoint with prompt log-probabilities.

It renders a chat as ``<role>text`` turns (the continuation is the open assistant turn when
``continue_final_message`` is true), cuts each turn's text into tokens of up to three
characters, and gives every token a deterministic log-probability from a hash of the text
before it and the token itself (:func:`token_logprob`); rank 1 when it is above -2.
``prompt_logprobs`` then has vLLM's shape: None for the first token, else ``{token_id:
{"logprob", "rank", "decoded_token"}}`` with the top-1 token added when the prompt's token is
not it. With ``supports=False`` it answers like a server without the extension (200 and
no ``prompt_logprobs``); ``requests`` counts what it received.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def token_logprob(before: str, token: str) -> float:
    digest = hashlib.sha256(f"{before}\0{token}".encode()).digest()
    return -0.05 - 6.0 * int.from_bytes(digest[:4], "big") / 2**32


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join("<image>" if part.get("type") == "image_url" else part.get("text", "") for part in content)


def tokens(messages: list[dict[str, Any]], open_last: bool) -> list[str]:
    out: list[str] = []
    for number, message in enumerate(messages):
        out.append(f"<{message['role']}>")
        text = _text(message["content"])
        out += [text[i : i + 3] for i in range(0, len(text), 3)]
        if not (open_last and number == len(messages) - 1):
            out.append("</>")
    return out


def expected_logprob(messages: list[dict[str, Any]], continuation: str) -> float:
    """What the stand-in gives for ``continuation`` after ``messages`` (for the tests)."""
    rendered = tokens([*messages, {"role": "assistant", "content": continuation}], open_last=True)
    pieces = [continuation[i : i + 3] for i in range(0, len(continuation), 3)]
    start = len(rendered) - len(pieces)
    return sum(token_logprob("".join(rendered[:i]), rendered[i]) for i in range(start, len(rendered)))


class FakeLogprobServer:
    def __init__(self, supports: bool = True) -> None:
        self.supports = supports
        self.requests = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length))
                with server._lock:
                    server.requests += 1
                payload = json.dumps(server.answer(body)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        self.port = self._http.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._thread.start()

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        data: dict[str, Any] = {
            "choices": [{"message": {"role": "assistant", "content": "x"}, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 1},
        }
        if not self.supports or not body.get("prompt_logprobs"):
            return data
        rendered = tokens(body["messages"], open_last=bool(body.get("continue_final_message")))
        entries: list[Any] = [None]
        for index in range(1, len(rendered)):
            token = rendered[index]
            logprob = token_logprob("".join(rendered[:index]), token)
            rank = 1 if logprob > -2 else 2
            entry = {str(index): {"logprob": logprob, "rank": rank, "decoded_token": token}}
            if rank != 1:
                entry["0"] = {"logprob": -0.01, "rank": 1, "decoded_token": "<top>"}
            entries.append(entry)
        data["prompt_logprobs"] = entries
        data["usage"]["prompt_tokens"] = len(rendered)
        return data

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()
