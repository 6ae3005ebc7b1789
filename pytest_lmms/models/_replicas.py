"""Several endpoints (replicas) of one deployment behind one backend.

``base_url`` names one endpoint, several separated by ``|``
(``base_url=http://a:8000/v1|http://b:8000/v1``: the ``--model-args`` parser splits on
commas), a list (in a ``--lmms-config`` file), or ``@FILE``: a file of URLs, one per line
(blank lines and ``#`` comments skipped). The replicas serve the same model, so which one answered never enters the cache
key (``base_url`` is a transport field).

Routing is client-side and sticky: a request goes to the replica with the highest
rendezvous (highest-random-weight) hash of its URL and the request's prefix key (the hash
of its first medium, or of its prompt's start), so questions about one image or video hit
one replica's prefix cache; when a replica leaves, only its own keys move, and all the
requests of one key move to the same next replica.

Each replica has its own :class:`AdaptiveLimiter`. A replica that stops answering (a
refused connection, or ``STRIKES_OUT`` dropped connections / timeouts in a row with no
answer between) is taken out with a warning naming it, as long as another one is still in;
its requests go to the others at once (a move is not a retry), and it is probed every
``probe_interval`` seconds (any HTTP answer to ``GET {url}/models``) and at the start of
each batch, and takes its keys back when it answers.

Under ``pytest -n N`` every worker talks to the same endpoints, so each worker takes its
share of the concurrency budget (:func:`worker_share`) instead of the whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import threading
import time
import urllib.parse
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pytest_lmms.models._concurrency import AdaptiveLimiter, ConcurrencyController

SEPARATOR = "|"
STRIKES_OUT = 3  # dropped connections / timeouts in a row that take a replica out
PROBE_TIMEOUT_S = 5.0
LOOKAHEAD = 64  # bodies a dispatcher holds to find one whose replica has a free slot

Failure = Literal["refused", "dropped", "timeout"]


class ReplicaWarning(UserWarning):
    """A replica of the deployment stopped answering (or never did)."""


def parse_endpoints(value: str) -> tuple[str, ...]:
    """The endpoint URLs that ``base_url`` names: one, several joined by ``|``, or ``@FILE``."""
    text = value.strip()
    if text.startswith("@"):
        path = Path(text[1:]).expanduser()
        try:
            lines = path.read_text().splitlines()
        except OSError as exc:
            raise ValueError(
                f"base_url=@{path}: cannot read the file of endpoint URLs ({exc.strerror})"
            ) from None
        items = [line.split("#", 1)[0] for line in lines]
        where = f"base_url=@{path}"
    elif text.startswith("[") and text.endswith("]"):
        # a YAML list in --lmms-config / evaluate(), which reaches backends as its str()
        items = [str(item) for item in _literal_list(text)]
        where = "base_url"
    else:
        items = text.split(SEPARATOR)
        where = "base_url"
    urls = [item.strip().rstrip("/") for item in items if item.strip()]
    if not urls:
        raise ValueError(f"{where}: no endpoint URL given")
    for url in urls:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(
                f"{where}: {url!r} is not an http(s) URL (several endpoints are separated by '{SEPARATOR}')"
            )
    return tuple(dict.fromkeys(urls))  # a URL listed twice is one replica


def _literal_list(text: str) -> list[object]:
    import ast

    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise ValueError(f"base_url: {text!r} is not a list of URLs") from None
    if not isinstance(value, list):
        raise ValueError(f"base_url: {text!r} is not a list of URLs")
    return value


def worker_share(total: int, environ: Mapping[str, str] | None = None) -> int:
    """This xdist worker's part of a concurrency budget of ``total`` (at least 1).

    The parts of all workers add up to ``total`` (the first ``total % N`` workers take one
    more); outside xdist the whole budget is this process's."""
    env = os.environ if environ is None else environ
    try:
        count = int(env.get("PYTEST_XDIST_WORKER_COUNT") or 1)
    except ValueError:
        count = 1
    if count <= 1:
        return total
    worker = env.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    share = total // count + (1 if index % count < total % count else 0)
    return max(1, share)


def endpoint_unreachable(base_url: str, timeout_s: float = 5.0) -> str | None:
    """Why nothing listens at ``base_url`` (refused, no route, unknown host), or None."""
    parsed = urllib.parse.urlsplit(base_url)
    host = parsed.hostname or "127.0.0.1"
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        return (
            f"cannot connect to {base_url} ({host}:{port}: {reason}); is the server running? "
            "(checked once before sending; no request was sent)"
        )


def _weight(url: str, key: str) -> int:
    digest = hashlib.blake2b(f"{url}\n{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


@dataclass
class Replica:
    url: str
    limiter: AdaptiveLimiter
    up: bool = True
    out_reason: str = ""
    strikes: int = 0  # dropped connections / timeouts since its last answer
    answered: int = 0
    moved_away: int = 0  # requests sent to another replica because this one was out
    times_out: int = 0
    rejoined: int = 0


@dataclass
class ReplicaLog:
    """Where replica events go: a warning (shown in pytest's warnings summary, or on stderr
    outside a test) and a line in ``replicas-<pid>.log`` in the run's folder."""

    path: Path | None = None
    lines: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def event(self, message: str, warn: bool) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        line = f"{stamp} {message}"
        with self._lock:
            self.lines.append(line)
            if self.path is not None:
                try:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    with open(self.path, "a") as handle:
                        handle.write(line + "\n")
                except OSError:
                    pass  # the warning still tells
        if warn:
            warnings.warn(ReplicaWarning(f"pytest-lmms: {message}"), stacklevel=2)


class ReplicaSet:
    """The replicas of one deployment: routing, taking out, probing, bringing back."""

    def __init__(
        self,
        urls: Sequence[str],
        new_controller: Callable[[], ConcurrencyController],
        probe_interval_s: float = 5.0,
        log: ReplicaLog | None = None,
    ) -> None:
        self._new_controller = new_controller
        self.replicas = [Replica(url, AdaptiveLimiter(new_controller())) for url in urls]
        self.probe_interval_s = probe_interval_s
        self.log = log or ReplicaLog()
        self._ranking: dict[str, list[Replica]] = {}
        self._wake: Callable[[], None] = lambda: None

    def __len__(self) -> int:
        return len(self.replicas)

    @property
    def several(self) -> bool:
        return len(self.replicas) > 1

    def by_url(self, url: str) -> Replica:
        return next(replica for replica in self.replicas if replica.url == url)

    # ---- routing -------------------------------------------------------------------------
    def route(self, key: str) -> Replica:
        """The replica for ``key``: the first one in by its rendezvous ranking."""
        if not self.several:
            return self.replicas[0]
        ranking = self._ranking.get(key)
        if ranking is None:
            ranking = sorted(self.replicas, key=lambda replica: _weight(replica.url, key), reverse=True)
            self._ranking[key] = ranking
        return next((replica for replica in ranking if replica.up), ranking[0])

    # ---- health --------------------------------------------------------------------------
    def answered(self, replica: Replica) -> None:
        replica.strikes = 0
        replica.answered += 1

    def failed(self, replica: Replica, failure: Failure, reason: str) -> bool:
        """A request to ``replica`` got no answer; whether it should go to another replica now
        (this one is out, and another is in)."""
        if not replica.up:
            moved = any(other.up for other in self.replicas)
        else:
            replica.strikes += 1
            moved = (failure == "refused" or replica.strikes >= STRIKES_OUT) and self.take_out(
                replica, reason
            )
        replica.moved_away += moved
        return moved

    def take_out(self, replica: Replica, reason: str, before_run: bool = False) -> bool:
        """Stop routing to ``replica`` (never the last one in); whether it was taken out."""
        others = [other for other in self.replicas if other is not replica and other.up]
        if not replica.up or not others:
            return False
        replica.up = False
        replica.out_reason = reason
        replica.times_out += 1
        when = "does not answer" if before_run else "stopped answering"
        self.log.event(
            f"replica {replica.url} {when} ({reason}); its requests go to the other "
            f"{len(others)} replica(s), and it is probed every {self.probe_interval_s:g} s",
            warn=True,
        )
        return True

    def bring_back(self, replica: Replica) -> None:
        replica.up = True
        replica.strikes = 0
        replica.rejoined += 1
        # a restarted server is a new server: its limit is found again from slow start
        replica.limiter.controller = self._new_controller()
        self.log.event(f"replica {replica.url} answers again; it takes its requests back", warn=False)
        self._wake()

    def check_before_sending(self) -> str | None:
        """One TCP connect per endpoint before the first request: None when some answer
        (the ones that do not are taken out, with a warning), else why none does."""
        urls = [replica.url for replica in self.replicas]
        if len(urls) == 1:
            return endpoint_unreachable(urls[0])
        with ThreadPoolExecutor(max_workers=min(16, len(urls))) as pool:
            reasons = list(pool.map(endpoint_unreachable, urls))
        if all(reasons):
            listed = "; ".join(
                f"{url}: {_short(reason or '')}" for url, reason in zip(urls, reasons, strict=True)
            )
            return (
                f"cannot connect to any of the {len(urls)} endpoints ({listed}); are the servers running? "
                "(checked once before sending; no request was sent)"
            )
        for replica, reason in zip(self.replicas, reasons, strict=True):
            if reason:
                self.take_out(replica, _short(reason), before_run=True)
        return None

    # ---- probing -------------------------------------------------------------------------
    async def probe_out(self, session: Any) -> None:
        """Probe every replica that is out once; bring back those that answer."""
        out = [replica for replica in self.replicas if not replica.up]
        if not out:
            return
        answers = await asyncio.gather(*(self._answers(session, replica.url) for replica in out))
        for replica, answer in zip(out, answers, strict=True):
            if answer and not replica.up:
                self.bring_back(replica)

    async def keep_probing(self, session: Any) -> None:
        """Probe the replicas that are out every ``probe_interval_s`` (until cancelled)."""
        while True:
            await asyncio.sleep(self.probe_interval_s)
            await self.probe_out(session)

    async def _answers(self, session: Any, url: str) -> bool:
        """Whether anything answers HTTP at ``url``: any status will do (a hung server that
        accepts connections does not)."""
        import aiohttp

        try:
            timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S)
            async with session.get(f"{url}/models", timeout=timeout) as http:
                await http.read()
            return True
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False

    # ---- dispatch ------------------------------------------------------------------------
    async def dispatch(
        self,
        bodies: asyncio.Queue[tuple[int, bytes | Exception] | None],
        key_of: Callable[[int], str],
        start: Callable[[int, bytes, str, Replica, float], None],
        fail: Callable[[int, Exception], None],
    ) -> None:
        """Send every body from ``bodies`` (until its None) to its replica as soon as that
        replica has a free slot: ``start(index, body, key, replica, sent_at)`` holds the slot.

        With several replicas up to ``LOOKAHEAD`` bodies wait here, so a full replica does
        not hold back requests for the others; one replica keeps one (in order). Neither
        taking a ready body nor a free slot yields to the loop, so every free slot is filled
        at once, however fast the servers answer.
        """
        freed = asyncio.Event()
        self._wake = freed.set
        self._ranking.clear()  # bounded by one batch's prefix keys
        for replica in self.replicas:
            replica.limiter.on_free = freed.set
        lookahead = LOOKAHEAD if self.several else 1
        pending: list[tuple[int, bytes, str]] = []
        getter: asyncio.Task[tuple[int, bytes | Exception] | None] | None = None
        exhausted = False
        try:
            while True:
                while not exhausted and len(pending) < lookahead:
                    if getter is not None:
                        if not getter.done():
                            break
                        item, getter = getter.result(), None
                    elif bodies.empty():
                        break
                    else:
                        item = bodies.get_nowait()
                    if item is None:
                        exhausted = True
                    elif isinstance(item[1], Exception):
                        fail(item[0], item[1])
                    else:
                        pending.append((item[0], item[1], key_of(item[0])))
                freed.clear()
                pending = self._send_ready(pending, start)
                if exhausted and not pending:
                    return
                want_body = not exhausted and len(pending) < lookahead
                if want_body and getter is None:
                    getter = asyncio.ensure_future(bodies.get())
                await self._wait(getter if want_body else None, freed if pending else None)
        finally:
            if getter is not None:
                getter.cancel()
            for replica in self.replicas:
                replica.limiter.on_free = None
            self._wake = lambda: None

    def _send_ready(
        self, pending: list[tuple[int, bytes, str]], start: Callable[[int, bytes, str, Replica, float], None]
    ) -> list[tuple[int, bytes, str]]:
        left: list[tuple[int, bytes, str]] = []
        for index, body, key in pending:
            replica = self.route(key)
            sent_at = replica.limiter.try_acquire()
            if sent_at is None:
                left.append((index, body, key))
            else:
                start(index, body, key, replica, sent_at)
        return left

    async def _wait(self, getter: asyncio.Task[Any] | None, freed: asyncio.Event | None) -> None:
        """Until a body arrives (``getter``), a slot frees (``freed``) or a pause ends."""
        pauses = [left for replica in self.replicas if (left := replica.limiter.pause_left()) > 0]
        timeout = min(pauses) if pauses else None  # a paused replica frees no slot when it resumes
        if freed is None and getter is not None:
            await asyncio.wait({getter})
            return
        assert freed is not None
        if getter is None:
            with contextlib.suppress(TimeoutError):  # a pause ended
                await asyncio.wait_for(freed.wait(), timeout)
            return
        waiting = asyncio.ensure_future(freed.wait())
        try:
            await asyncio.wait({getter, waiting}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiting.cancel()

    def stats(self) -> list[dict[str, Any]]:
        """Per replica: its URL, whether it is in, answers, requests moved away, outages."""
        return [
            {
                "url": replica.url,
                "up": replica.up,
                "answered": replica.answered,
                "moved_away": replica.moved_away,
                "times_out": replica.times_out,
                "rejoined": replica.rejoined,
            }
            for replica in self.replicas
        ]


def _short(reason: str) -> str:
    """The cause of an ``endpoint_unreachable`` message, without its advice."""
    return reason.split("; is the server running?")[0]
