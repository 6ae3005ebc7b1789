"""The Engine: every model call of a session goes through it.

It takes the session's requests up front (``plan``), answers cache hits at once, and runs
the misses in large batches on one background thread, in plan order, so a sample item only
waits for its own response and the model never waits for scoring. Every answer is written
to the cache (write-ahead log, fsynced) before the item waiting on it is released, so an
answer is durable before its sample is reported: a crash loses only answers no item saw.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol

from pytest_lmms.models._base import Backend, BackendError
from pytest_lmms.types import Request, Response


class _Cache(Protocol):
    def get_many(self, keys: Sequence[str]) -> dict[str, Response]: ...

    def put_many(self, entries: Sequence[tuple[str, Request, Response]]) -> int: ...


@dataclass
class EngineStats:
    requests: int = 0
    cache_hits: int = 0
    model_calls: int = 0
    batches: int = 0
    failures: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    model_seconds: float = 0.0


class Engine:
    """Plans, caches and batches the requests of one session (or xdist worker)."""

    def __init__(
        self,
        backend_factory: Callable[[], Backend],
        identity: Mapping[str, Any],
        cache: _Cache | None = None,
        prefetcher: Any = None,
        cache_only: bool = False,
    ) -> None:
        self._backend_factory = backend_factory
        self.identity = identity
        self._cache = cache
        # decodes the videos of planned misses ahead of the model (media.MediaPrefetcher)
        self._prefetcher = prefetcher
        # --lmms-rescore: answers come from the cache or not at all; the backend never starts
        self._cache_only = cache_only
        self._backend: Backend | None = None
        self._futures: dict[str, Future[Response]] = {}
        self._requests: dict[str, Request] = {}
        self._pending: deque[str] = deque()
        self._urgent: deque[str] = deque()
        self._lock = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.stats = EngineStats()

    @property
    def backend_started(self) -> bool:
        return self._backend is not None

    def counters(self) -> dict[str, int]:
        """Counts for a progress view: the engine's, the backend's own where it keeps them
        (``in_flight``, ``retries``, ``rate_limited``), and whether the backend is starting."""
        out = {"requests": self.stats.requests, "model_calls": self.stats.model_calls}
        backend = self._backend
        out["starting"] = int(backend is None and self._thread is not None)
        for name in ("in_flight", "retries", "rate_limited"):
            value = getattr(backend, name, None)
            if isinstance(value, int):
                out[name] = value
        return out

    def status(self) -> str | None:
        """What the engine waits for before its backend can answer (a backend's own
        ``status`` text: building, loading weights, starting a server), else None."""
        backend = self._backend
        if backend is None:
            return "starting the model backend" if self._thread is not None else None
        text = getattr(backend, "status", None)
        return text if isinstance(text, str) and text else None

    def plan(self, entries: Sequence[tuple[str, Request]]) -> None:
        """Register requests in the order they will be needed; cache hits resolve at once."""
        new = [(key, req) for key, req in entries if key not in self._futures]
        hits = self._cache.get_many([key for key, _ in new]) if self._cache and new else {}
        misses: list[str] = []
        with self._lock:
            for key, request in new:
                if key in self._futures:
                    continue
                future: Future[Response] = Future()
                self._futures[key] = future
                self.stats.requests += 1
                hit = hits.get(key)
                if hit is not None:
                    self.stats.cache_hits += 1
                    future.set_result(hit)
                else:
                    self._requests[key] = request
                    misses.append(key)
            if self._cache_only:
                missing = BackendError(
                    "not in the response cache, and --lmms-rescore asks no model "
                    "(run without --lmms-rescore to answer it)"
                )
                for key in misses:
                    del self._requests[key]
                    self.stats.failures += 1
                    self._futures[key].set_exception(missing)
                misses = []
            ordered = self._grouped_by_prefix(misses) if misses else []
            to_prefetch = [self._requests[key] for key in ordered]
            if ordered:
                self._pending.extend(ordered)
                self._ensure_worker()
                self._lock.notify()
        if self._prefetcher is not None and to_prefetch:
            self._prefetcher.submit(to_prefetch)

    def _grouped_by_prefix(self, keys: list[str]) -> list[str]:
        """Requests sharing an image / video / prompt prefix side by side (groups in order of
        first appearance, plan order within a group), so a server's prefix cache and a
        local engine's batches see them together."""
        groups: dict[str, list[str]] = {}
        for key in keys:
            try:
                prefix = self._requests[key].prefix_key
            except Exception:  # noqa: BLE001 - unreadable media: the backend reports it
                prefix = key
            groups.setdefault(prefix, []).append(key)
        return [key for group in groups.values() for key in group]

    def response(self, key: str, request: Request) -> Future[Response]:
        """The future response for one request, planned now if it was not before."""
        future = self._futures.get(key)
        if future is None:
            self.plan([(key, request)])
            future = self._futures[key]
        if not future.done():
            with self._lock:
                if key in self._requests:
                    self._urgent.append(key)
                    self._lock.notify()
        return future

    def _ensure_worker(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="pytest-lmms-engine", daemon=True)
            self._thread.start()

    def _next_batch(self) -> list[tuple[str, Request]]:
        with self._lock:
            while not (self._pending or self._urgent or self._closed):
                self._lock.wait()
            if self._closed and not (self._pending or self._urgent):
                return []
            # a backend without max_batch_size answers one request at a time
            limit = int(getattr(self._backend, "max_batch_size", 1) or 1) if self._backend else 1
            batch: list[tuple[str, Request]] = []
            for queue in (self._urgent, self._pending):
                while queue and len(batch) < max(limit, 1):
                    key = queue.popleft()
                    request = self._requests.pop(key, None)
                    if request is not None:
                        batch.append((key, request))
            return batch

    def _run(self) -> None:
        try:
            self._backend = self._backend_factory()
        except BaseException as exc:  # noqa: BLE001 - every waiting item must learn why
            self._fail_all(BackendError(f"the model backend could not start: {type(exc).__name__}: {exc}"))
            return
        try:
            while True:
                batch = self._next_batch()
                if not batch:
                    return
                self._run_batch(batch)
        except BaseException as exc:  # noqa: BLE001 - a dead engine thread must not leave items waiting
            self._fail_all(BackendError(f"the engine stopped: {type(exc).__name__}: {exc}"))

    def _run_batch(self, batch: list[tuple[str, Request]]) -> None:
        assert self._backend is not None
        started = time.perf_counter()
        stream = getattr(self._backend, "generate_each", None)
        if callable(stream):
            self._run_streaming(stream, batch)
        else:
            try:
                outputs = self._backend.generate([request for _, request in batch])
                if len(outputs) != len(batch):
                    raise BackendError(f"backend returned {len(outputs)} responses for {len(batch)} requests")
            except BaseException as exc:  # noqa: BLE001 - a batch failure fails its items, not the run
                outputs = [exc] * len(batch)
            self._deliver(
                [(key, request, output) for (key, request), output in zip(batch, outputs, strict=True)]
            )
        self.stats.batches += 1
        self.stats.model_seconds += time.perf_counter() - started

    def _run_streaming(self, stream: Callable[..., None], batch: list[tuple[str, Request]]) -> None:
        """Backends that answer one by one (servers, APIs): release items as answers come,
        each after it is in the cache, written by a committer thread off the backend's own
        (its event loop never waits on an fsync)."""
        committer = _GroupCommitter(self._deliver)
        delivered = [False] * len(batch)
        lock = threading.Lock()

        def callback(index: int, output: Response | BaseException) -> None:
            with lock:  # a backend may call back from several threads
                if delivered[index]:
                    return
                delivered[index] = True
            key, request = batch[index]
            committer.add((key, request, output))

        try:
            stream([request for _, request in batch], callback)
        except BaseException as exc:  # noqa: BLE001 - what was not answered fails, the rest stands
            for index in range(len(batch)):
                if not delivered[index]:
                    callback(index, exc)
        finally:
            for index in range(len(batch)):
                if not delivered[index]:
                    callback(index, BackendError("the backend returned without answering this request"))
            committer.close()

    def _deliver(self, entries: Sequence[tuple[str, Request, Any]]) -> None:
        """Cache what was answered, then release every waiting item."""
        stats = self.stats
        answered: list[tuple[str, Request, Response]] = []
        for key, request, output in entries:
            if isinstance(output, Response) and isinstance(output.text, str):
                answered.append((key, request, output))
                stats.model_calls += 1
                stats.input_tokens += output.input_tokens or 0
                stats.output_tokens += output.output_tokens or 0
        if self._cache and answered:
            try:
                self._cache.put_many(answered)
            except Exception as exc:  # noqa: BLE001 - losing the cache must not lose answers
                import warnings

                warnings.warn(f"response cache write failed: {exc}", stacklevel=1)
        for key, _request, output in entries:
            future = self._futures[key]
            if isinstance(output, Response) and isinstance(output.text, str):
                future.set_result(output)
            else:
                stats.failures += 1
                error = (
                    output
                    if isinstance(output, BaseException)
                    else BackendError(f"backend returned {type(output).__name__} instead of a Response")
                )
                future.set_exception(error)

    def _fail_all(self, error: BaseException) -> None:
        with self._lock:
            keys = list(self._requests)
            self._requests.clear()
            self._pending.clear()
            self._urgent.clear()
        for key in keys:
            self.stats.failures += 1
            self._futures[key].set_exception(error)
        for future in list(self._futures.values()):  # a batch taken but never answered
            if not future.done():
                self.stats.failures += 1
                future.set_exception(error)
        self._thread = None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        cancelled = BackendError("the session ended before this request was answered")
        for key in list(self._requests):
            future = self._futures[key]
            if not future.done():
                future.set_exception(cancelled)
        if self._prefetcher is not None:
            self._prefetcher.close()
        if self._backend is not None:
            self._backend.close()
            self._backend = None


class _GroupCommitter:
    """Delivers (caches, then releases) streamed answers on its own thread, as a group commit:
    whatever arrived while the previous group was being fsynced goes in the next group. An
    answer therefore waits for at most one fsync in front of its own, never for a later
    answer, and a busy server still gets one fsync per many answers."""

    def __init__(self, deliver: Callable[[Sequence[tuple[str, Request, Any]]], None]) -> None:
        self._deliver = deliver
        self._queue: list[tuple[str, Request, Any]] = []
        self._ready = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="pytest-lmms-commit", daemon=True)
        self._thread.start()

    def add(self, entry: tuple[str, Request, Any]) -> None:
        with self._ready:
            self._queue.append(entry)
            self._ready.notify()

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self._closed:
                    self._ready.wait()
                if not self._queue:
                    return
                group, self._queue = self._queue, []
            self._deliver(group)

    def close(self) -> None:
        """Deliver what is queued, then stop."""
        with self._ready:
            self._closed = True
            self._ready.notify()
        self._thread.join()
