"""Request-phase throughput of the openai backend against a floor, on this machine.

    python benchmarks/perf/api_throughput.py [--requests 2000]

A stand-in OpenAI-compatible server (benchmarks/perf/standin_server.py) runs in another
process on 127.0.0.1 and stops by itself. The requests are image questions (one distinct
PNG file per question, hashed first as a run's planning does). The floor is a bare aiohttp
client sending the very same bodies (built before its clock starts) with a semaphore of the
same concurrency. Printed, each beside its target:

* the backend's request phase (``generate``) over the floor's, for fixed concurrency 64 and
  256 and the default adaptive controller, with every answer after L = 0.2 s and at once
  (L = 0), and the client CPU per request of both;
* against a server that takes K = 32 at once and answers 429 with ``Retry-After: 1``
  beyond: the request phase over the ideal ceil(N / K) * L, and the 429s after the first
  second;
* the concurrency the adaptive controller held over time (a short trace);
* the most requests in flight at once with an instant server at fixed concurrency 64.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import math
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SERVER = Path(__file__).with_name("standin_server.py")
SLOW_S = 0.2
CAPACITY = 32


@dataclass
class Measured:
    wall_s: float
    cpu_s: float
    failures: int = 0
    peak_in_flight: int = 0
    trace: list[tuple[float, int]] = field(default_factory=list)
    server: dict[str, Any] = field(default_factory=dict)


class StandIn:
    """The stand-in server process; ``url(latency_s, capacity)`` names a scenario."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(SERVER), "--lifetime", "900"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.base = self.process.stdout.readline().strip()

    def url(self, latency_s: float, capacity: int = 0) -> str:
        return f"{self.base}/lat/{round(latency_s * 1000)}/cap/{capacity}/v1"

    def stats(self, reset: bool = True) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.base}/stats{'?reset=1' if reset else ''}") as answer:
            return json.loads(answer.read())

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=10)


THREADED = """
import sys
sys.path.insert(0, {root!r})
from tests.fake_openai import FakeOpenAI
server = FakeOpenAI()
print(server.url, flush=True)
for line in sys.stdin:  # each line: report the most requests in service at once, and reset
    print(server.max_in_flight, flush=True)
    server.max_in_flight = 0
"""


def threaded_peaks(images: Sequence[Path], bodies: Sequence[bytes], concurrency: int) -> tuple[int, int]:
    """Most requests a thread-per-connection server (tests/fake_openai.py, answering at once,
    in another process) had in service at once: this backend's, then the floor's."""
    process = subprocess.Popen(
        [sys.executable, "-c", THREADED.format(root=str(ROOT))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        url = process.stdout.readline().strip()
        peaks = []
        for run in (
            lambda: run_backend(url, images, concurrency),
            lambda: run_floor(url, bodies, concurrency),
        ):
            run()
            process.stdin.write("\n")
            process.stdin.flush()
            peaks.append(int(process.stdout.readline()))
        return peaks[0], peaks[1]
    finally:
        process.stdin.close()
        process.wait(timeout=10)


def make_images(folder: Path, count: int) -> list[Path]:
    """Distinct small PNGs (noise, so they do not compress to nothing): ~12 KB each."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        pixels = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        path = folder / f"img{i:05d}.png"
        path.write_bytes(buffer.getvalue())
        paths.append(path)
    return paths


def make_requests(images: Sequence[Path]) -> list[Any]:
    from pytest_lmms.types import MediaPart, MediaRef, Message, Request, TextPart

    requests = []
    for i, path in enumerate(images):
        parts = (
            MediaPart(MediaRef("image", path), "image"),
            TextPart(f"question {i}: what is shown? reply A"),
        )
        request = Request(task="perf", doc_id=str(i), messages=(Message("user", parts),))
        request.canonical()  # the hash a run's planning computes before any model call
        requests.append(request)
    return requests


def sample_limit(client: Any, started: float, stop: threading.Event, trace: list[tuple[float, int]]) -> None:
    while not stop.wait(0.25):
        trace.append((time.perf_counter() - started, client.limiter.controller.allowed))


def run_backend(url: str, images: Sequence[Path], concurrency: int | None) -> Measured:
    from pytest_lmms.models import create_backend
    from pytest_lmms.types import Response

    args = {"base_url": url, "timeout": "60", "max_retries": "20"}
    if concurrency is not None:
        args["max_concurrency"] = str(concurrency)
    client = create_backend("openai:standin", args)
    requests = make_requests(images)
    trace: list[tuple[float, int]] = [(0.0, client.limiter.controller.allowed)]
    stop = threading.Event()
    cpu, wall = time.process_time(), time.perf_counter()
    sampler = threading.Thread(target=sample_limit, args=(client, wall, stop, trace), daemon=True)
    sampler.start()
    outputs = client.generate(requests)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    stop.set()
    sampler.join()
    failures = sum(1 for o in outputs if not isinstance(o, Response))
    return Measured(wall, cpu, failures, client.peak_in_flight, trace)


def bodies_for(images: Sequence[Path]) -> list[bytes]:
    from pytest_lmms.models import create_backend

    client = create_backend("openai:standin", {"base_url": "http://127.0.0.1:1/v1"})
    return [client.body(request) for request in make_requests(images)]


def run_floor(url: str, bodies: Sequence[bytes], concurrency: int) -> Measured:
    """The bare client: one session, a semaphore, prebuilt bodies, read and decode the JSON."""
    import aiohttp
    import orjson

    peak = 0

    async def main() -> int:
        nonlocal peak
        in_flight = 0
        gate = asyncio.Semaphore(concurrency)
        connector = aiohttp.TCPConnector(limit=0)
        headers = {"Content-Type": "application/json"}
        async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

            async def one(body: bytes) -> bool:
                nonlocal in_flight, peak
                async with gate:
                    in_flight += 1
                    peak = max(peak, in_flight)
                    try:
                        async with session.post(f"{url}/chat/completions", data=body) as answer:
                            ok = answer.status == 200
                            orjson.loads(await answer.read())
                    finally:
                        in_flight -= 1
                    return ok

            results = await asyncio.gather(*(one(body) for body in bodies))
        return sum(1 for ok in results if not ok)

    cpu, wall = time.process_time(), time.perf_counter()
    failures = asyncio.run(main())
    return Measured(time.perf_counter() - wall, time.process_time() - cpu, failures, peak)


def fmt_trace(trace: Sequence[tuple[float, int]], every_s: float = 0.5) -> str:
    shown, next_at = [], 0.0
    for when, allowed in trace:
        if when >= next_at:
            shown.append(f"{when:.1f}s:{allowed}")
            next_at = when + every_s
    return " ".join(shown)


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000, help="requests per measurement (N)")
    opts = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    n = opts.requests
    server = StandIn()
    try:
        with tempfile.TemporaryDirectory() as folder:
            images = make_images(Path(folder), n)
            bodies = bodies_for(images)
            run_backend(server.url(0), images[:50], 8)  # warm-up: imports, first connections
            report(server, images, bodies, n)
    finally:
        server.close()


def report(server: StandIn, images: Sequence[Path], bodies: Sequence[bytes], n: int) -> None:
    size_kb = sum(len(b) for b in bodies) / len(bodies) / 1024
    print(
        f"api_throughput: N={n} image questions (64x64 PNG each, body {size_kb:.0f} KB), stand-in server in"
    )
    print("another process; request phase of the openai backend / bare aiohttp floor (same bodies, same C)")
    print()
    print(
        f"{'latency':>8}  {'client':<14}{'phase':>8}{'floor':>8}{'ratio':>8}  {'target':<9}"
        f"{'CPU/req':>9}{'floor':>9}  {'peak':>5}"
    )
    instant_peak: tuple[int, int, int] | None = None
    adaptive_trace: list[tuple[float, int]] = []
    for latency in (SLOW_S, 0.0):
        url = server.url(latency)
        floors = {c: run_floor(url, bodies, c) for c in (64, 256)}
        server.stats()
        for label, concurrency, floor_c in (
            ("fixed C=64", 64, 64),
            ("fixed C=256", 256, 256),
            ("adaptive", None, 64),
        ):
            measured = run_backend(url, images, concurrency)
            served = server.stats()
            floor = floors[floor_c]
            ratio = measured.wall_s / floor.wall_s
            target = "<=1.10x" if latency else "(none)"
            status = verdict(ratio <= 1.10) if latency else ""
            vs = f" vs C={floor_c}" if concurrency is None else ""
            print(
                f"{latency:>7.1f}s  {label:<14}{measured.wall_s:>7.2f}s{floor.wall_s:>7.2f}s{ratio:>7.2f}x  "
                f"{target:<9}{measured.cpu_s / n * 1e3:>7.3f}ms{floor.cpu_s / n * 1e3:>7.3f}ms  "
                f"{measured.peak_in_flight:>5} {status}{vs}"
                + (f"  FAILURES {measured.failures}" if measured.failures else "")
            )
            if latency == 0.0 and concurrency == 64:
                instant_peak = (measured.peak_in_flight, served["peak_in_service"], floors[64].peak_in_flight)
            if latency and concurrency is None:
                adaptive_trace = measured.trace
    print(f"adaptive limit over time (L={SLOW_S:g} s, no server limit): {fmt_trace(adaptive_trace)}")
    print()
    rate_limited(server, images, n)
    print()
    if instant_peak is not None:
        client, _, floor_peak = instant_peak
        print(
            f"peak in flight, instant server, fixed C=64: {client} sent and unanswered at once "
            f"(bare aiohttp {floor_peak})  target >= 48: {verdict(client >= 48)}"
        )
    ours, floor_seen = threaded_peaks(images[:1000], bodies[:1000], 64)
    print(
        f"  a thread-per-connection server answering at once (another process) had {ours} in service "
        f"at once (bare aiohttp: {floor_seen})"
    )


def rate_limited(server: StandIn, images: Sequence[Path], n: int) -> None:
    url = server.url(SLOW_S, CAPACITY)
    server.stats()
    measured = run_backend(url, images, None)
    served = server.stats()
    ideal = math.ceil(n / CAPACITY) * SLOW_S
    ratio = measured.wall_s / ideal
    refusals = served["refusals"]
    late = sum(1 for t in refusals if t > 1.0)
    attempts_late = served["answered"] + len(refusals)  # an upper bound of attempts after 1 s
    share = late / max(1, attempts_late)
    print(
        f"rate-limited: the server takes K={CAPACITY} at once (429 + Retry-After: 1 beyond), L={SLOW_S:g} s, adaptive"
    )
    print(
        f"  request phase {measured.wall_s:.2f}s, ideal ceil(N/K)*L = {ideal:.2f}s: {ratio:.2f}x  "
        f"target <=1.15x: {verdict(ratio <= 1.15)}"
        + (f"  FAILURES {measured.failures}" if measured.failures else "")
    )
    print(
        f"  429s: {len(refusals)} in all, {late} after the first second ({share:.1%} of attempts)  "
        f"target < 2%: {verdict(share < 0.02)}"
    )
    print(f"  limit over time: {fmt_trace(measured.trace)}")


if __name__ == "__main__":
    main()
