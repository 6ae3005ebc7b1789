"""Concurrency control and retries for server and API backends.

``AdaptiveLimiter`` is an AIMD controller: the number of requests in flight grows by one
after each window of successes while latency stays near its best, and is cut in half on a
rate limit (429), an overloaded server (503) or a timeout; ``Retry-After`` pauses every
new request until the time the server asked for. ``Backoff`` gives the delay before a
retry: exponential with full jitter, at least the server's ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from dataclasses import dataclass, field


@dataclass
class AdaptiveLimiter:
    """How many requests may be in flight; ``fixed`` turns adaptation off."""

    initial: int = 8
    minimum: int = 1
    maximum: int = 256
    fixed: bool = False
    latency_tolerance: float = 2.0  # shrink when latency exceeds this multiple of the best seen
    limit: float = field(init=False)
    in_flight: int = field(default=0, init=False)
    paused_until: float = field(default=0.0, init=False)
    best_latency: float = field(default=math.inf, init=False)
    latency_average: float | None = field(default=None, init=False)
    successes_in_window: int = field(default=0, init=False)
    peak_in_flight: int = field(default=0, init=False)
    _changed: asyncio.Condition | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not 1 <= self.minimum <= self.initial <= self.maximum:
            raise ValueError(
                f"concurrency needs 1 <= minimum <= initial <= maximum, got {self.minimum}, {self.initial}, {self.maximum}"
            )
        self.limit = float(self.initial)

    @property
    def _condition(self) -> asyncio.Condition:
        if self._changed is None:
            self._changed = asyncio.Condition()
        return self._changed

    async def acquire(self) -> None:
        async with self._condition:
            while True:
                wait = self.paused_until - time.monotonic()
                if wait > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._condition.wait(), timeout=wait)
                    continue
                if self.in_flight < int(self.limit):
                    break
                await self._condition.wait()
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    async def release(self) -> None:
        async with self._condition:
            self.in_flight -= 1
            self._condition.notify_all()

    def record_success(self, latency_s: float) -> None:
        self.best_latency = min(self.best_latency, latency_s)
        # A moving average, so one slow answer (a long generation) does not count as queueing.
        self.latency_average = (
            latency_s if self.latency_average is None else 0.9 * self.latency_average + 0.1 * latency_s
        )
        if self.fixed:
            return
        self.successes_in_window += 1
        if self.successes_in_window < int(self.limit):
            return
        # One decision per window of `limit` successes: grow by one, or shrink gently when
        # latency has risen well above its best (queueing at the server) before it refuses.
        self.successes_in_window = 0
        queueing = (
            self.latency_average > self.latency_tolerance * self.best_latency and self.latency_average > 0.05
        )
        if queueing:
            self.limit = max(self.minimum, self.limit * 0.9)
        else:
            self.limit = min(self.maximum, self.limit + 1)

    def record_overload(self, retry_after_s: float | None) -> None:
        """A 429 / 503 / timeout: halve the limit and honour ``Retry-After``."""
        if not self.fixed:
            self.limit = max(self.minimum, self.limit / 2)
            self.successes_in_window = 0
        if retry_after_s is not None and retry_after_s > 0:
            self.paused_until = max(self.paused_until, time.monotonic() + retry_after_s)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter, never shorter than the server's Retry-After."""

    base_s: float = 0.5
    cap_s: float = 30.0

    def delay(self, attempt: int, retry_after_s: float | None, rng: random.Random) -> float:
        exponential = min(self.cap_s, self.base_s * 2**attempt)
        jittered = rng.uniform(0, exponential)
        return max(jittered, retry_after_s or 0.0)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
