"""The Engine: planning, cache hits, batching, priorities and failures (real threads, real cache)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from pytest_lmms.cache import ResponseCache, cache_key
from pytest_lmms.models import BackendError
from pytest_lmms.models._engine import Engine
from pytest_lmms.types import Message, Request, Response, TextPart

IDENTITY = {"backend": "recording", "model": "m"}


def make_request(i: int) -> Request:
    return Request(task="t", doc_id=str(i), messages=(Message("user", (TextPart(f"question {i}"),)),))


def entries(n: int) -> list[tuple[str, Request]]:
    return [(cache_key(IDENTITY, r), r) for r in map(make_request, range(n))]


class Recording:
    name = "recording"

    def __init__(self, batch_size: int = 4, fail_docs: Sequence[str] = ()) -> None:
        self.max_batch_size = batch_size
        self.batches: list[list[str]] = []
        self.fail_docs = set(fail_docs)
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        self.closed = False

    def identity(self) -> dict[str, str]:
        return IDENTITY

    def generate(self, requests: Sequence[Request]) -> list[Response | BaseException]:
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(10)
            self.gate = None
        self.batches.append([r.doc_id for r in requests])
        return [
            RuntimeError(f"no answer for {r.doc_id}")
            if r.doc_id in self.fail_docs
            else Response(text=f"a{r.doc_id}")
            for r in requests
        ]

    def close(self) -> None:
        self.closed = True


def test_misses_run_in_batches_in_plan_order_and_are_cached(tmp_path: Path) -> None:
    backend = Recording(batch_size=4)
    with ResponseCache(tmp_path) as cache:
        engine = Engine(lambda: backend, IDENTITY, cache)
        planned = entries(10)
        engine.plan(planned)
        answers = [engine.response(key, request).result(timeout=10).text for key, request in planned]
        engine.close()
        assert answers == [f"a{i}" for i in range(10)]
        assert [len(b) for b in backend.batches] == [4, 4, 2]
        assert sum(backend.batches, []) == [str(i) for i in range(10)]
        assert len(cache.get_many([key for key, _ in planned])) == 10
    assert backend.closed


def test_cache_hits_answer_without_starting_the_backend(tmp_path: Path) -> None:
    planned = entries(5)
    with ResponseCache(tmp_path) as cache:
        cache.put_many([(key, request, Response(text="cached")) for key, request in planned])
        started: list[bool] = []

        def factory() -> Recording:
            started.append(True)
            return Recording()

        engine = Engine(factory, IDENTITY, cache)
        engine.plan(planned)
        responses = [engine.response(key, request).result(timeout=1) for key, request in planned]
        engine.close()
    assert [r.text for r in responses] == ["cached"] * 5 and all(r.cached for r in responses)
    assert started == [] and not engine.backend_started
    assert engine.stats.cache_hits == 5 and engine.stats.model_calls == 0


def test_a_waiting_item_jumps_the_queue() -> None:
    backend = Recording(batch_size=2)
    backend.gate = threading.Event()
    engine = Engine(lambda: backend, IDENTITY)
    planned = entries(8)
    engine.plan(planned)
    assert backend.entered.wait(10)  # the first batch is running, held at the gate
    key, request = planned[7]
    future = engine.response(key, request)
    backend.gate.set()
    assert future.result(timeout=10).text == "a7"
    engine.close()
    assert backend.batches[0] == ["0", "1"] and backend.batches[1][0] == "7"


def test_one_failed_request_fails_only_its_own_future() -> None:
    engine = Engine(lambda: Recording(batch_size=3, fail_docs=["1"]), IDENTITY)
    planned = entries(3)
    engine.plan(planned)
    futures = [engine.response(key, request) for key, request in planned]
    assert futures[0].result(timeout=10).text == "a0"
    with pytest.raises(RuntimeError, match="no answer for 1"):
        futures[1].result(timeout=10)
    assert futures[2].result(timeout=10).text == "a2"
    engine.close()
    assert engine.stats.failures == 1


def test_failed_responses_are_never_cached(tmp_path: Path) -> None:
    with ResponseCache(tmp_path) as cache:
        engine = Engine(lambda: Recording(fail_docs=["0"]), IDENTITY, cache)
        planned = entries(2)
        engine.plan(planned)
        for key, request in planned:
            engine.response(key, request).exception(timeout=10)
        engine.close()
        assert set(cache.get_many([key for key, _ in planned])) == {planned[1][0]}


def test_a_backend_that_cannot_start_fails_every_request_with_the_reason() -> None:
    def factory() -> Recording:
        raise OSError("no such model directory /models/x")

    engine = Engine(factory, IDENTITY)
    planned = entries(3)
    engine.plan(planned)
    for key, request in planned:
        with pytest.raises(BackendError, match="could not start: OSError: no such model directory"):
            engine.response(key, request).result(timeout=10)
    engine.close()


def test_a_batch_that_raises_or_miscounts_fails_its_requests() -> None:
    class Broken(Recording):
        def generate(self, requests: Sequence[Request]) -> list[Response | BaseException]:
            if requests[0].doc_id == "0":
                raise MemoryError("out of memory")
            return [Response(text="only one")]

    engine = Engine(lambda: Broken(batch_size=2), IDENTITY)
    planned = entries(4)
    engine.plan(planned)
    errors = [engine.response(k, r).exception(timeout=10) for k, r in planned]
    engine.close()
    assert all(isinstance(e, MemoryError) for e in errors[:2])
    assert all(isinstance(e, BackendError) and "1 responses for 2 requests" in str(e) for e in errors[2:])


def test_close_fails_what_was_never_answered() -> None:
    backend = Recording(batch_size=1)
    backend.gate = threading.Event()
    engine = Engine(lambda: backend, IDENTITY)
    planned = entries(3)
    engine.plan(planned)
    assert backend.entered.wait(10)
    closer = threading.Thread(target=engine.close)
    closer.start()
    backend.gate.set()
    closer.join(10)
    outcomes = [engine.response(k, r) for k, r in planned]
    assert outcomes[0].result(timeout=1).text == "a0"
    assert all(f.done() for f in outcomes)


def test_requests_sharing_an_image_are_dispatched_together() -> None:
    from pytest_lmms.types import MediaPart, MediaRef

    images = [MediaRef("image", f"image-{i}".encode()) for i in range(3)]

    def with_image(i: int) -> Request:
        parts = (MediaPart(images[i % 3], "image"), TextPart(f"question {i}"))
        return Request(task="t", doc_id=str(i), messages=(Message("user", parts),))

    planned = [(cache_key(IDENTITY, r), r) for r in map(with_image, range(9))]
    backend = Recording(batch_size=3)
    engine = Engine(lambda: backend, IDENTITY)
    engine.plan(planned)
    for key, request in planned:
        engine.response(key, request).result(timeout=10)
    engine.close()
    assert backend.batches == [["0", "3", "6"], ["1", "4", "7"], ["2", "5", "8"]]


def test_a_backend_that_breaks_the_engine_fails_its_requests_instead_of_hanging() -> None:
    from pytest_lmms.models._engine import Engine
    from pytest_lmms.types import Message, Request, TextPart

    class NoBatchSize:  # no max_batch_size: answered one at a time
        name = "nobatch"

        def identity(self):  # type: ignore[no-untyped-def]
            return {"backend": "nobatch"}

        def generate(self, requests):  # type: ignore[no-untyped-def]
            from pytest_lmms.types import Response

            return [Response(text="ok") for _ in requests]

        def close(self) -> None:
            pass

    request = Request(task="t", doc_id="0", messages=(Message("user", (TextPart("q"),)),))
    engine = Engine(NoBatchSize, {"backend": "nobatch"})
    assert engine.response("k0", request).result(timeout=30).text == "ok"
    engine.close()

    class Broken(NoBatchSize):
        @property
        def max_batch_size(self) -> int:
            raise RuntimeError("boom")

    engine = Engine(Broken, {"backend": "broken"})
    future = engine.response("k1", request)
    with pytest.raises(Exception, match="the engine stopped: RuntimeError: boom"):
        future.result(timeout=30)
    engine.close()
