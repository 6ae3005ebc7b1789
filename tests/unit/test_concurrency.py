"""The adaptive concurrency controller, driven on a simulated clock (no sleeps, no server).

``simulate`` is a discrete-event model of the client and a server: the client keeps as
many requests out as the controller allows (honouring its pause), a server with a
concurrency capacity answers after a latency that may grow with its load, and refuses with
429 + Retry-After beyond its capacity; a refused request is retried after Retry-After, as
the openai backend does.
"""

from __future__ import annotations

import asyncio
import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from pytest_lmms.models._concurrency import AdaptiveLimiter, ConcurrencyController


@dataclass
class Run:
    trace: list[tuple[float, int]] = field(default_factory=list)  # (time, allowed) after each event
    answered: list[float] = field(default_factory=list)  # answer times
    refused: list[float] = field(default_factory=list)  # refusal times
    sent: int = 0

    def allowed_at(self, t: float) -> int:
        return [allowed for when, allowed in self.trace if when <= t][-1]

    def allowed_between(self, start: float, end: float) -> list[int]:
        return [allowed for when, allowed in self.trace if start <= when <= end]

    def rate_between(self, start: float, end: float) -> float:
        return sum(1 for t in self.answered if start <= t < end) / (end - start)


def simulate(
    controller: ConcurrencyController,
    *,
    until: float,
    latency_s: Callable[[int], float] = lambda load: 0.2,
    capacity: Callable[[float], float] = lambda t: math.inf,
    retry_after_s: float = 1.0,
    outstanding: int | None = None,
) -> Run:
    """Run the client against the server until ``until`` seconds; ``outstanding`` caps the
    requests the client has to send at once (an application-limited client)."""
    run = Run()
    events: list[tuple[float, int, str, float]] = []  # (time, sequence, kind, sent_at)
    sequence = 0
    in_flight = 0
    at_server = 0
    retries: list[float] = []  # times at which refused requests may go again

    def push(t: float, kind: str, sent_at: float = 0.0) -> None:
        nonlocal sequence
        sequence += 1
        heapq.heappush(events, (t, sequence, kind, sent_at))

    def send_more(now: float) -> None:
        nonlocal in_flight, at_server
        if now < controller.paused_until:
            push(controller.paused_until, "wake")
            return
        while in_flight < controller.allowed and (outstanding is None or in_flight < outstanding):
            if retries and retries[0] > now and outstanding is not None and in_flight >= outstanding:
                break
            if retries and retries[0] <= now:
                heapq.heappop(retries)
            in_flight += 1
            run.sent += 1
            if at_server >= capacity(now):
                push(now + 0.001, "refused", now)
            else:
                at_server += 1
                push(now + latency_s(at_server), "answered", now)

    send_more(0.0)
    while events and events[0][0] <= until:
        now, _, kind, sent_at = heapq.heappop(events)
        if kind == "answered":
            controller.on_success(now - sent_at, in_flight, now)
            in_flight -= 1
            at_server -= 1
            run.answered.append(now)
        elif kind == "refused":
            controller.on_overload(retry_after_s, sent_at, now)
            in_flight -= 1
            run.refused.append(now)
            heapq.heappush(retries, now + retry_after_s)
            push(now + retry_after_s, "wake")
        send_more(now)
        run.trace.append((now, controller.allowed))
    return run


def test_slow_start_reaches_a_fast_servers_capacity_in_a_few_round_trips() -> None:
    run = simulate(ConcurrencyController(initial=8), until=2.0)
    # from 8, doubling per 0.2 s round trip: 64 after three round trips, 256 after five
    assert run.allowed_at(0.61) >= 64
    assert run.allowed_at(1.01) >= 256
    assert not run.refused


def test_growth_stops_at_the_knee_where_latency_rises() -> None:
    # a server that answers 32 at a time: beyond that, requests queue and latency grows
    run = simulate(
        ConcurrencyController(initial=8), until=30.0, latency_s=lambda load: 0.2 * max(1, load / 32)
    )
    held = run.allowed_between(10.0, 30.0)
    assert min(held) >= 24 and max(held) <= 80
    assert run.rate_between(10.0, 30.0) >= 0.9 * 32 / 0.2


def test_refusals_beyond_capacity_cut_the_limit_which_then_holds_below_it() -> None:
    run = simulate(ConcurrencyController(initial=8), until=20.0, capacity=lambda t: 32)
    assert run.refused, "slow start overshoots once"
    late = [t for t in run.refused if t > 1.0]
    assert len(late) < 0.02 * run.sent
    held = run.allowed_between(3.0, 20.0)
    assert min(held) >= 25 and max(held) <= 34
    assert run.rate_between(2.0, 20.0) >= 0.9 * 32 / 0.2


def test_one_overshoot_cuts_once_not_once_per_refused_request() -> None:
    controller = ConcurrencyController(initial=64)
    for _ in range(32):  # 32 requests sent at t=0 all refused at t=0.01
        controller.on_overload(None, sent_at=0.0, now=0.01)
    assert controller.allowed == int(64 * 0.8)
    controller.on_overload(None, sent_at=0.02, now=0.03)  # sent after the cut: a new signal
    assert controller.allowed == int(64 * 0.8 * 0.8)


def test_retry_after_pauses_everyone_only_when_the_server_answers_nothing() -> None:
    controller = ConcurrencyController(initial=4)
    for i in range(8):  # answers every 0.1 s, 0.2 s each
        controller.on_success(0.2, in_flight=4, now=0.2 + 0.1 * i)
    controller.on_overload(2.0, sent_at=0.9, now=0.95)
    assert controller.paused_until < 0.95  # answers still come: only the refused request waits
    controller.on_overload(2.0, sent_at=1.5, now=1.6)  # nothing answered for two round trips
    assert controller.paused_until == pytest.approx(3.6)


def test_recovers_after_the_server_sheds_load_and_comes_back() -> None:
    def capacity(t: float) -> float:
        return 8 if 5.0 <= t < 10.0 else 64

    run = simulate(ConcurrencyController(initial=8), until=20.0, capacity=capacity)
    assert max(run.allowed_between(7.0, 10.0)) <= 10  # backed off to what the server takes
    assert run.allowed_at(14.0) >= 56  # and found the capacity again within 20 round trips
    assert run.rate_between(15.0, 20.0) >= 0.85 * 64 / 0.2


def test_an_application_limited_client_does_not_inflate_the_limit() -> None:
    run = simulate(ConcurrencyController(initial=8), until=20.0, outstanding=4)
    assert max(allowed for _, allowed in run.trace) <= 9


def test_a_fixed_limit_never_moves() -> None:
    run = simulate(ConcurrencyController(initial=16, maximum=16, fixed=True), until=5.0, capacity=lambda t: 8)
    assert {allowed for _, allowed in run.trace} == {16}


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="minimum <= initial <= maximum"):
        ConcurrencyController(initial=8, maximum=4)


def test_the_gate_admits_up_to_the_limit_and_wakes_waiters_in_order() -> None:
    clock = [0.0]
    limiter = AdaptiveLimiter(ConcurrencyController(initial=2, maximum=2, fixed=True), clock=lambda: clock[0])
    order: list[int] = []

    async def take(i: int) -> None:
        await limiter.acquire()
        order.append(i)

    async def main() -> None:
        await limiter.acquire()
        await limiter.acquire()
        waiters = [asyncio.create_task(take(i)) for i in range(3)]
        await asyncio.sleep(0)
        assert order == [] and limiter.in_flight == 2
        limiter.release()
        await asyncio.sleep(0)
        assert order == [0]
        limiter.release()
        limiter.release()
        await asyncio.gather(*waiters)
        assert order == [0, 1, 2] and limiter.peak_in_flight == 2

    asyncio.run(main())


def test_a_non_blocking_take_never_steals_a_slot_handed_to_a_waiter() -> None:
    clock = [0.0]
    limiter = AdaptiveLimiter(ConcurrencyController(initial=2, maximum=2, fixed=True), clock=lambda: clock[0])
    freed: list[int] = []
    limiter.on_free = lambda: freed.append(limiter.in_flight)

    async def main() -> None:
        assert limiter.try_acquire() == 0.0 and limiter.try_acquire() == 0.0
        assert limiter.try_acquire() is None  # full
        waiter = asyncio.create_task(limiter.acquire())
        await asyncio.sleep(0)
        limiter.release()  # the slot goes to the waiter, which has not run yet
        assert freed == [1]
        assert limiter.try_acquire() is None
        await waiter
        assert limiter.in_flight == 2 and limiter.peak_in_flight == 2
        limiter.release()
        limiter.controller.paused_until = 5.0  # a Retry-After pause: nothing leaves before it
        assert limiter.try_acquire() is None and limiter.pause_left() == 5.0
        clock[0] = 5.0
        assert limiter.try_acquire() == 5.0 and limiter.pause_left() == 0.0

    asyncio.run(main())
