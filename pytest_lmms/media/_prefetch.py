"""Decode-ahead: the videos of requests about to go to the model are decoded on a pool of
threads while the model works on earlier ones, so a batch never waits for its frames.

At most ``max_ahead`` decoded videos wait unused: a worker takes the next video only when
one decoded earlier was used (or after ``stale_s`` seconds, when its request may have
failed before reading it), so decoding ahead never pushes frames the model still needs out
of the frame cache. A video that fails to decode here is left to the backend, which reads
it again and fails that sample with the path and the decoder's error.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterable
from typing import Any

from pytest_lmms.media._video import FRAME_CACHE, FrameCache
from pytest_lmms.types import MediaPart, Request


class MediaPrefetcher:
    def __init__(
        self, threads: int = 2, cache: FrameCache = FRAME_CACHE, max_ahead: int = 16, stale_s: float = 30.0
    ) -> None:
        self.threads = max(1, threads)
        self.cache = cache
        self.max_ahead = max(1, max_ahead)
        self.stale_s = stale_s
        self._queue: deque[MediaPart] = deque()
        self._seen: set[tuple[str, tuple[Any, ...]]] = set()
        self._waiting: OrderedDict[tuple[str, tuple[Any, ...]], float] = OrderedDict()  # decoded, unused
        self._lock = threading.Condition()
        self._workers: list[threading.Thread] = []
        self._closed = False
        self._in_flight = 0
        self._used_early: set[tuple[str, tuple[Any, ...]]] = set()
        self.decoded = 0
        self.errors = 0
        cache.on_use = self._used

    def submit(self, requests: Iterable[Request]) -> int:
        """Queue the video parts of ``requests`` (in order, each video once); returns how many."""
        added = 0
        with self._lock:
            for request in requests:
                for message in request.messages:
                    for part in message.content:
                        if not (isinstance(part, MediaPart) and part.type == "video"):
                            continue
                        try:
                            key = FrameCache.key(part.media, part.sampling)
                        except Exception:  # noqa: BLE001 - unreadable: the backend reports it
                            continue
                        if key in self._seen:
                            continue
                        self._seen.add(key)
                        self._queue.append(part)
                        added += 1
            if added:
                self._start()
                self._lock.notify_all()
        return added

    def _start(self) -> None:
        while len(self._workers) < self.threads:
            worker = threading.Thread(target=self._run, name="pytest-lmms-decode", daemon=True)
            worker.start()
            self._workers.append(worker)

    def _used(self, key: tuple[str, tuple[Any, ...]]) -> None:
        with self._lock:
            if self._waiting.pop(key, None) is not None:
                self._lock.notify_all()
            elif key in self._seen:  # used while still being decoded here
                self._used_early.add(key)

    def _next(self) -> MediaPart | None:
        with self._lock:
            while not self._closed:
                now = time.monotonic()
                while self._waiting and now - next(iter(self._waiting.values())) > self.stale_s:
                    self._waiting.popitem(last=False)
                if self._queue and len(self._waiting) + self._in_flight < self.max_ahead:
                    self._in_flight += 1
                    return self._queue.popleft()
                self._lock.wait(timeout=min(self.stale_s, 1.0) if self._waiting else None)
            return None

    def _run(self) -> None:
        while True:
            part = self._next()
            if part is None:
                return
            key = FrameCache.key(part.media, part.sampling)
            decoded = failed = False
            try:
                if not self.cache.contains(part.media, part.sampling):
                    self.cache.frames(part.media, part.sampling, prefetch=True)
                    decoded = True
            except Exception:  # noqa: BLE001 - the backend decodes it again and reports
                failed = True
            with self._lock:
                self._in_flight -= 1
                if decoded:
                    self.decoded += 1
                    if key in self._used_early:
                        self._used_early.discard(key)
                    else:
                        self._waiting[key] = time.monotonic()
                self.errors += failed
                self._lock.notify_all()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._queue.clear()
            self._lock.notify_all()
        for worker in self._workers:
            worker.join(timeout=5)
        if self.cache.on_use == self._used:
            self.cache.on_use = None
