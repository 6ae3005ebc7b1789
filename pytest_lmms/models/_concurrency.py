"""Concurrency control and retries for server and API backends.

``ConcurrencyController`` decides how many requests may be in flight. Its decisions are a
pure function of the events it is told about (a success with its latency, a refusal) and
of the clock readings passed with them, so tests drive it on a simulated clock:

* slow start: the limit grows by one per success (it doubles every round trip) while
  latency holds and nothing is refused, so a server's capacity is reached in a few round
  trips rather than one slot per round trip;
* a refusal (429 / 503 / 529, a timeout) remembers the limit it happened at as the
  ceiling and cuts the limit to ``overload_factor`` of it; the limit then climbs back
  quickly to just under the ceiling, holds there for ``hold_rounds`` round trips and probes
  above it by +1, +2, +4, ... (so a server that got faster is found again quickly, and one
  that did not is probed about once per ``hold_rounds`` round trips);
* latency well above the best seen (``latency_tolerance``: queueing at the server before
  it refuses) cuts the limit gently to ``queueing_factor`` of itself and holds it there;
  latency above ``latency_rising`` of the best stops growth.

One decision per round trip (a window of ``limit`` answers). A refusal cuts only when its
request was sent after the last cut (the ones sent before were answered by that cut), so an
overshoot cuts once, and a limit still above a server's capacity is cut again as soon as
requests sent under it are refused. ``Retry-After`` delays the refused request's retry (see
``Backoff``); it pauses every new request only when a request is refused with not one answer
since the last cut (the server takes nothing: a quota rather than a concurrency limit).

``AdaptiveLimiter`` is the asyncio gate in front of the controller (``acquire`` waits for a
slot; ``try_acquire`` takes one only if it is free now, for a dispatcher choosing among
several replicas' limiters; see ``_replicas.py``), and ``Backoff`` gives
the delay before a retry: exponential with full jitter, at least the server's
``Retry-After``.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class ConcurrencyController:
    """How many requests may be in flight; ``fixed`` turns adaptation off."""

    initial: int = 8
    minimum: int = 1
    maximum: int = 512
    fixed: bool = False
    latency_tolerance: float = 2.0  # queueing: a round's mean latency above this multiple of the best
    queueing_floor_s: float = 0.05  # ... and at least this much above it (sub-50 ms jitter is not a queue)
    latency_rising: float = 1.5  # above this multiple the limit stops growing (near the knee)
    overload_factor: float = 0.8
    queueing_factor: float = 0.9
    hold_rounds: int = 4
    limit: float = field(init=False)
    slow_start: bool = field(default=True, init=False)
    ceiling: float = field(default=math.inf, init=False)
    best_latency: float = field(default=math.inf, init=False)
    paused_until: float = field(default=-math.inf, init=False)
    last_cut_at: float = field(default=-math.inf, init=False)
    last_answer_at: float = field(default=-math.inf, init=False)
    _window_started: float = field(default=-math.inf, init=False)
    _window_size: int = field(default=0, init=False)
    _window_answers: int = field(default=0, init=False)
    _window_busy: int = field(default=0, init=False)
    _window_latency: float = field(default=0.0, init=False)
    _rounds_held: int = field(default=0, init=False)
    _probe_step: float = field(default=1.0, init=False)

    def __post_init__(self) -> None:
        if not 1 <= self.minimum <= self.initial <= self.maximum:
            raise ValueError(
                f"concurrency needs 1 <= minimum <= initial <= maximum, got {self.minimum}, {self.initial}, {self.maximum}"
            )
        self.limit = float(self.initial)
        self._window_size = self.initial

    @property
    def allowed(self) -> int:
        """Requests that may be in flight now."""
        return max(self.minimum, int(self.limit))

    def on_success(self, latency_s: float, in_flight: int, now: float) -> None:
        """An answer after ``latency_s``; ``in_flight`` counts it and the others still out."""
        # Only a limit that is used is evidence: an application-limited client (few requests
        # left, a small batch) must not climb to the maximum without testing it.
        busy = in_flight >= self.limit / 2
        self.last_answer_at = now
        if self.slow_start and busy and not self.fixed:
            self.limit = min(float(self.maximum), self.limit + 1)
        if now - latency_s < self._window_started:
            return  # sent before the last decision: its latency tells of the limit before it
        self._window_answers += 1
        self._window_busy += busy
        self._window_latency += latency_s
        if self._window_answers >= self._window_size:
            self._end_round(now)

    def on_overload(self, retry_after_s: float | None, sent_at: float, now: float) -> None:
        """A refusal (429 / 503 / 529) or a timeout of a request sent at ``sent_at``."""
        if sent_at < self.last_cut_at:
            return  # sent under the limit before the last cut: that cut already answered it
        # no answer for two round trips: the server takes nothing now (a quota rather than
        # a concurrency limit), so nobody goes before its Retry-After
        silent = now - self.last_answer_at > 2 * self.best_latency or self.last_answer_at == -math.inf
        if silent and retry_after_s:
            self.paused_until = max(self.paused_until, now + retry_after_s)
        self.last_cut_at = now
        self._reset_window(now)
        if self.fixed:
            return
        self.slow_start = False
        self.ceiling = self.limit
        self.limit = max(float(self.minimum), self.limit * self.overload_factor)
        self._rounds_held = 0
        self._probe_step = 1.0

    def _reset_window(self, now: float) -> None:
        self._window_started = now
        self._window_size = max(1, int(self.limit))
        self._window_answers = self._window_busy = 0
        self._window_latency = 0.0

    def _end_round(self, now: float) -> None:
        mean = self._window_latency / self._window_answers
        mostly_busy = self._window_busy * 2 >= self._window_answers
        queued = mean - self.best_latency > self.queueing_floor_s
        queueing = queued and mean > self.latency_tolerance * self.best_latency
        rising = queued and mean > self.latency_rising * self.best_latency
        best = self.best_latency
        self._update_best_latency(mean)
        if not self.fixed:
            if queueing or (rising and self.slow_start):
                self._cut_for_queueing(mean, best)
            elif mostly_busy and not self.slow_start and not rising:
                self._grow()
        self._reset_window(now)

    def _update_best_latency(self, mean: float) -> None:
        if mean < self.best_latency:
            self.best_latency = mean
        else:
            # drift up slowly, so a workload that turns to longer answers is not read as a
            # queue for ever
            self.best_latency += 0.002 * (mean - self.best_latency)

    def _cut_for_queueing(self, mean: float, best: float) -> None:
        # Beyond the knee latency grows with the limit: cut to where it would be back at
        # ``latency_rising`` of the best, by at most half and at least ``queueing_factor``.
        factor = min(self.queueing_factor, max(0.5, self.latency_rising * best / mean))
        self.slow_start = False
        self.limit = max(float(self.minimum), self.limit * factor)
        self.ceiling = self.limit + 1  # hold here, then probe
        self._rounds_held = 0
        self._probe_step = 1.0

    def _grow(self) -> None:
        below = self.ceiling - 1
        if self.limit < below:
            # back to just under the ceiling in a few round trips (a binary search)
            self.limit = min(below, self.limit + max(1.0, (below - self.limit) / 2))
        elif self._rounds_held < self.hold_rounds:
            self._rounds_held += 1
        else:
            # probe above it, faster each round it holds (a server that got faster)
            self.limit += min(self._probe_step, self.limit / 2)
            self._probe_step *= 2
        self.limit = min(float(self.maximum), self.limit)


class AdaptiveLimiter:
    """The asyncio gate in front of a :class:`ConcurrencyController`.

    ``acquire`` takes a slot without yielding to the loop when one is free, so a dispatcher
    fills every free slot in one go; waiters are woken one per freed slot, in order.
    """

    def __init__(
        self, controller: ConcurrencyController, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.controller = controller
        self.clock = clock
        self.in_flight = 0
        self.peak_in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        # slots handed to woken waiters that have not run yet: nobody else may take them
        self._handed = 0
        # called when a slot may have come free (a release, or a success that raised the
        # limit): a dispatcher that does not wait in ``acquire`` learns it can send again
        self.on_free: Callable[[], None] | None = None

    @property
    def limit(self) -> float:
        return self.controller.limit

    async def acquire(self) -> float:
        """Take a slot; returns the clock reading when it was taken (the request's send time)."""
        woken = False
        while True:
            pause = self.controller.paused_until - self.clock()
            if pause > 0:
                await asyncio.sleep(pause)
                continue
            # a woken waiter was handed its slot; the others queue behind earlier waiters
            if (woken or not self._waiters) and self.in_flight + self._handed < self.controller.allowed:
                break
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                else:
                    self._handed -= 1
                    self._wake()  # the slot it was handed goes to the next waiter
                raise
            self._handed -= 1
            woken = True
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        self._wake()
        return self.clock()

    def try_acquire(self) -> float | None:
        """Take a slot only if one is free now and nobody waits for one: the send time, or
        None. For a dispatcher choosing among several limiters (replicas) without blocking on
        a full one."""
        if self.controller.paused_until > self.clock() or self._waiters:
            return None
        if self.in_flight + self._handed >= self.controller.allowed:
            return None
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        return self.clock()

    def pause_left(self) -> float:
        """Seconds until a ``Retry-After`` pause ends (0 when there is none)."""
        return max(0.0, self.controller.paused_until - self.clock())

    def release(self) -> None:
        self.in_flight -= 1
        self._wake()
        self._notify_free()

    def record_success(self, latency_s: float) -> None:
        self.controller.on_success(latency_s, self.in_flight, self.clock())
        self._wake()
        self._notify_free()

    def _notify_free(self) -> None:
        if self.on_free is not None:
            self.on_free()

    def record_overload(self, retry_after_s: float | None, sent_at: float) -> None:
        self.controller.on_overload(retry_after_s, sent_at, self.clock())

    def _wake(self) -> None:
        free = self.controller.allowed - self.in_flight - self._handed
        while free > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._handed += 1
                free -= 1


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
