"""A stand-in OpenAI-compatible chat server for perf scripts, meant to run in its own process.

    python benchmarks/perf/standin_server.py [--lifetime 600]

It prints its base address on the first line of stdout and stops when its stdin closes (the
parent ended, however it ended) or after ``--lifetime`` seconds, whichever comes first.
Each scenario is a path prefix, so one process serves them all:

    http://127.0.0.1:PORT/lat/<milliseconds>/cap/<K>/v1/chat/completions

answers after <milliseconds> (0: at once) with a fixed completion, and when K > 0 accepts
at most K requests of that scenario at once, answering 429 with ``Retry-After`` beyond.
``GET /stats`` returns, since the last ``GET /stats?reset=1``, the most requests in service
at once, the answered count and the times (seconds since the first request) of the 429s.

An asyncio server (aiohttp.web) rather than tests/fake_openai.py's thread per connection,
so 256 sleeping requests cost the server nothing and the client is what is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections import defaultdict
from typing import Any

from aiohttp import web

REPLY = (
    b'{"id":"standin","object":"chat.completion","model":"standin","choices":[{"index":0,'
    b'"message":{"role":"assistant","content":"A"},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":10,"completion_tokens":1,"total_tokens":11}}'
)
REFUSAL = b'{"error":{"message":"too many requests in flight","type":"rate_limit"}}'


class Stats:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.in_service: dict[str, int] = defaultdict(int)
        self.peak_in_service = 0
        self.answered = 0
        self.first_request: float | None = None
        self.refusals: list[float] = []

    def as_json(self) -> dict[str, Any]:
        return {"peak_in_service": self.peak_in_service, "answered": self.answered, "refusals": self.refusals}


def make_app(retry_after: str) -> web.Application:
    stats = Stats()

    async def chat(request: web.Request) -> web.Response:
        latency_s = int(request.match_info["ms"]) / 1000
        capacity = int(request.match_info["cap"])
        scenario = request.match_info["ms"] + "/" + request.match_info["cap"]
        now = time.perf_counter()
        if stats.first_request is None:
            stats.first_request = now
        if capacity and stats.in_service[scenario] >= capacity:
            stats.refusals.append(round(now - stats.first_request, 4))
            await request.read()
            return web.Response(
                status=429,
                body=REFUSAL,
                content_type="application/json",
                headers={"Retry-After": retry_after},
            )
        # in service from the first byte to the answer, so an instant server counts too
        stats.in_service[scenario] += 1
        stats.peak_in_service = max(stats.peak_in_service, sum(stats.in_service.values()))
        try:
            await request.read()  # a real server reads the whole body before it answers
            if latency_s:
                await asyncio.sleep(latency_s)
        finally:
            stats.in_service[scenario] -= 1
        stats.answered += 1
        return web.Response(body=REPLY, content_type="application/json")

    async def stats_view(request: web.Request) -> web.Response:
        body = web.json_response(stats.as_json())
        if request.query.get("reset"):
            stats.reset()
        return body

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/lat/{ms}/cap/{cap}/v1/chat/completions", chat)
    app.router.add_get("/stats", stats_view)
    return app


async def serve(lifetime_s: float, retry_after: str) -> None:
    runner = web.AppRunner(make_app(retry_after), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"http://127.0.0.1:{port}", flush=True)
    loop = asyncio.get_running_loop()
    stdin_closed = loop.run_in_executor(None, sys.stdin.read)  # EOF: the parent is gone
    try:
        await asyncio.wait_for(asyncio.shield(stdin_closed), timeout=lifetime_s)
    except TimeoutError:
        pass
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lifetime", type=float, default=600.0, help="stop after this many seconds")
    parser.add_argument("--retry-after", default="1", help="the Retry-After header of a 429")
    opts = parser.parse_args()
    asyncio.run(serve(opts.lifetime, opts.retry_after))
    # the executor thread blocked on stdin would keep a lifetime-expired process alive
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
