"""Client CPU per request of the openai backend, against a local server in another process.

    python benchmarks/perf/openai_client.py [--requests 2000] [--concurrency 64]

The server (tests/fake_openai.py, answering at once) runs in a subprocess, so the CPU time
measured here (time.process_time of this process) is the client's alone: building bodies,
the HTTP exchange, JSON parsing and the concurrency controller. The issue's reference
points on this kind of machine: openai SDK ~2.4 ms, bare aiohttp ~0.4 ms, httpx ~9 ms.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVER = """
import sys, time
sys.path.insert(0, {root!r})
from tests.fake_openai import FakeOpenAI
server = FakeOpenAI()
print(server.url, flush=True)
sys.stdin.read()
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    opts = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from pytest_lmms.models import create_backend
    from pytest_lmms.types import Message, Request, TextPart

    server = subprocess.Popen(
        [sys.executable, "-c", SERVER.format(root=str(ROOT))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        client = create_backend("openai:perf", {"base_url": url, "max_concurrency": str(opts.concurrency)})
        requests = [
            Request(
                task="perf", doc_id=str(i), messages=(Message("user", (TextPart(f"question {i}: reply A"),)),)
            )
            for i in range(opts.requests)
        ]
        client.generate(requests[:50])  # warm-up: imports, connection pool
        cpu, wall = time.process_time(), time.perf_counter()
        outputs = client.generate(requests)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        server.stdin.close()  # type: ignore[union-attr]
        server.wait(timeout=10)
    failures = sum(1 for o in outputs if isinstance(o, BaseException))
    print(f"requests                 {opts.requests}  (failures {failures}, concurrency {opts.concurrency})")
    print(
        f"client CPU per request   {cpu / opts.requests * 1e3:8.3f} ms   (reference: bare aiohttp ~0.4 ms, openai SDK ~2.4 ms)"
    )
    print(
        f"wall per request         {wall / opts.requests * 1e3:8.3f} ms   ({opts.requests / wall:.0f} requests/s)"
    )


if __name__ == "__main__":
    main()
