"""``openai``: any OpenAI-compatible chat completions endpoint.

    --model=openai:gpt-4.1-mini
    --model=openai:Qwen/Qwen2.5-VL-7B-Instruct --model-args base_url=http://127.0.0.1:8000/v1

Requests go out from one asyncio loop over a pooled ``aiohttp`` session, paced by an
:class:`AdaptiveLimiter` (slow start, then AIMD around the server's knee; see
``_concurrency.py``). ``base_url`` may name several replicas of one deployment
(``URL|URL`` or ``@FILE``): each has its own limiter, requests are routed by prefix key
(media affinity), and a replica that stops answering has its requests moved to the others
until it answers again (``_replicas.py``).
Bodies are built ahead of dispatch (text-only ones on the loop, ones with media on a worker
thread in chunks), so every free slot is filled at once even when the server answers
instantly; ``peak_in_flight`` records the most requests out at once
(benchmarks/perf/api_throughput.py prints it).
This backend owns retrying, so the limiter sees every 429: rate limits, 5xx, timeouts,
dropped connections and malformed bodies are retried with exponential backoff and jitter
(at least ``Retry-After``) up to ``max_retries`` times; other 4xx fail at once. A request
that still fails is an error for its sample, never a string that gets scored.

``loglikelihood`` requests go to the same endpoint with vLLM's prompt log-probabilities
(``_prompt_logprobs.py``), after one probe request that tells whether the server has them.
Images are sent as data URLs, audio as ``input_audio`` (WAV); each medium is read and
base64-encoded once (a bounded cache by content hash) on a worker thread, off the event loop. The API key
is read from the environment variable named by ``api_key_env`` and never enters the
identity, the cache, logs or results.
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from pytest_lmms.models._base import BackendError
from pytest_lmms.models._concurrency import AdaptiveLimiter, Backoff, ConcurrencyController, parse_retry_after
from pytest_lmms.models._registry import register_model
from pytest_lmms.models._replicas import (
    Failure,
    Replica,
    ReplicaLog,
    ReplicaSet,
    parse_endpoints,
    worker_share,
)
from pytest_lmms.models._replicas import (
    endpoint_unreachable as endpoint_unreachable,  # re-exported: the one-probe check
)
from pytest_lmms.types import MediaPart, MediaRef, Request, Response, TextPart

DEFAULT_BASE_URL = "https://api.openai.com/v1"
RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 529}
OVERLOAD_STATUS = {429, 503, 529}

Callback = Callable[[int, "Response | BaseException"], None]
BODIES_AHEAD = 64  # bodies built before a slot is free for them (bounds memory with large media)
BODY_CHUNK = 32  # bodies built per worker-thread round trip


def _has_media(request: Request) -> bool:
    return any(isinstance(part, MediaPart) for message in request.messages for part in message.content)


class RetryableError(Exception):
    def __init__(
        self,
        message: str,
        status: int | None = None,
        retry_after_s: float | None = None,
        overload: bool | None = None,
        connection: Failure | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s
        # the endpoint did not answer at all (refused, dropped, timed out): with several
        # replicas, a sign that this one may be gone
        self.connection = connection
        # a sign of too many requests in flight (the limiter cuts): refusals, timeouts,
        # dropped connections; not a 500 or a malformed body
        self.overload = status in OVERLOAD_STATUS if overload is None else overload


@dataclass(frozen=True)
class OpenAIArgs:
    base_url: str
    api_key_env: str
    max_concurrency: int | None
    initial_concurrency: int
    max_retries: int
    timeout_s: float
    max_tokens_field: str
    stream: bool
    probe_interval_s: float = 5.0

    @classmethod
    def parse(
        cls,
        args: Mapping[str, Any],
        default_base_url: str = DEFAULT_BASE_URL,
        base_url_env: str = "OPENAI_BASE_URL",
        key_env: str = "OPENAI_API_KEY",
    ) -> OpenAIArgs:
        known = {
            "base_url",
            "api_key_env",
            "max_concurrency",
            "initial_concurrency",
            "max_retries",
            "timeout",
            "max_tokens_field",
            "stream",
            "probe_interval",
        }
        unknown = sorted(set(args) - known)
        if unknown:
            raise ValueError(f"openai backend: unknown argument(s) {unknown}; valid: {sorted(known)}")
        concurrency = str(args.get("max_concurrency", "auto"))
        try:
            return cls(
                base_url=str(args.get("base_url") or os.environ.get(base_url_env) or default_base_url).rstrip(
                    "/"
                ),
                api_key_env=str(args.get("api_key_env", key_env)),
                max_concurrency=None if concurrency == "auto" else int(concurrency),
                initial_concurrency=int(args.get("initial_concurrency", 8)),
                max_retries=int(args.get("max_retries", 6)),
                timeout_s=float(args.get("timeout", 120)),
                max_tokens_field=str(args.get("max_tokens_field", "max_tokens")),
                stream=str(args.get("stream", "false")).lower() in ("1", "true", "yes"),
                probe_interval_s=float(args.get("probe_interval", 5)),
            )
        except ValueError as exc:
            raise ValueError(f"openai backend: bad argument value: {exc}") from None


class _EncodedMedia:
    """Base64 and MIME type of each medium, encoded once; a bounded LRU by content hash.

    A medium is read once: its bytes give the base64, the MIME sniff and (when nothing has
    hashed it yet) the content hash, and are dropped after encoding so a run's images do
    not all stay in memory; a medium seen before (another question on the same image) is
    not read at all.
    """

    def __init__(self, capacity: int = 512) -> None:
        self._items: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._lock = threading.Lock()  # bodies are built on executor threads
        self.capacity = capacity

    def get(self, media: MediaRef) -> tuple[str, str]:
        """``(mime, base64)`` of ``media``."""
        data = None if media.has_hash else media.read_bytes()  # hash from the bytes read here
        key = media.content_hash
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                return found
        if data is None:
            data = media.read_bytes()
        found = (_mime_of(media, data), base64.b64encode(data).decode("ascii"))
        media.release()
        with self._lock:
            self._items[key] = found
            if len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return found


def _mime_of(media: MediaRef, data: bytes) -> str:
    if media.mime:
        return media.mime
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return "application/octet-stream"


def _failure_of(exc: Exception) -> Failure | None:
    """How a client error says the endpoint is not answering, or None (a bad URL, ...)."""
    import aiohttp

    if isinstance(exc, aiohttp.ClientConnectorError):
        return "refused"  # nothing accepts connections there (refused, no route, unknown host)
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError)):
        return "dropped"
    return None


@register_model("openai")
class OpenAIBackend:
    name = "openai"
    # loglikelihood: when the server has prompt log-probabilities (probed before the first)
    request_kinds = frozenset({"generate", "loglikelihood"})
    max_batch_size = 1_000_000  # the limiter paces requests; the engine hands over everything
    ENDPOINT = "/chat/completions"
    DEFAULT_BASE_URL = DEFAULT_BASE_URL
    BASE_URL_ENV = "OPENAI_BASE_URL"
    KEY_ENV = "OPENAI_API_KEY"

    def __init__(self, model_id: str, **args: Any) -> None:
        if not model_id:
            raise ValueError("openai backend: give the served model name, e.g. --model=openai:gpt-4.1-mini")
        self.model_id = model_id
        self.args = OpenAIArgs.parse(args, self.DEFAULT_BASE_URL, self.BASE_URL_ENV, self.KEY_ENV)
        try:
            self.replicas = self.make_replicas(parse_endpoints(self.args.base_url))
        except ValueError as exc:
            raise ValueError(f"{self.name} backend: {exc}") from None
        # requests out at the server at once (sent, answer not yet read), for perf scripts
        self.in_flight = 0
        self.peak_in_flight = 0
        self.backoff = Backoff()
        self._rng = random.Random(0)
        self._media = _EncodedMedia()
        self.attempts = 0
        self._probed = False
        self._unreachable: str | None = None
        self._logprobs_refusal: str | None = None  # why the server cannot give log-probabilities
        self._logprobs_probed = False
        # for the progress view: requests sent again, and refusals for rate (429, 529)
        self.retries = 0
        self.rate_limited = 0

    def identity(self) -> Mapping[str, Any]:
        return {"backend": self.name, "model": self.model_id}

    # ---- endpoints and concurrency -----------------------------------------------------
    def shares_endpoint(self) -> bool:
        """Whether every xdist worker talks to the same endpoints (so they split one budget)."""
        return True

    def new_controller(self) -> ConcurrencyController:
        """A controller for one replica: ``max_concurrency`` / ``initial_concurrency`` are per
        endpoint, and under ``-n N`` each worker takes its share of them."""
        fixed = self.args.max_concurrency is not None
        initial = self.args.max_concurrency if fixed else self.args.initial_concurrency
        assert initial is not None
        maximum = initial if fixed else max(initial, 512)
        if self.shares_endpoint():
            initial, maximum = worker_share(initial), worker_share(maximum)
        return ConcurrencyController(initial=initial, minimum=1, maximum=maximum, fixed=fixed)

    def make_replicas(self, urls: Sequence[str]) -> ReplicaSet:
        log = ReplicaLog()
        if len(urls) > 1:
            from pytest_lmms.models._server import default_log_dir

            log.path = default_log_dir() / f"{self.name}-replicas-{os.getpid()}.log"
        return ReplicaSet(urls, self.new_controller, self.args.probe_interval_s, log)

    @property
    def limiter(self) -> AdaptiveLimiter:
        """The first replica's limiter (the only one with one endpoint)."""
        return self.replicas.replicas[0].limiter

    # ---- request body ------------------------------------------------------------------
    def _content(self, part: TextPart | MediaPart) -> dict[str, Any]:
        if isinstance(part, TextPart):
            return {"type": "text", "text": part.text}
        if part.type == "image":
            mime, data = self._media.get(part.media)
            return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}"}}
        if part.type == "audio":
            from pytest_lmms.media import as_wav

            _, data = self._media.get(MediaRef("audio", as_wav(part.media), mime="audio/wav"))
            return {"type": "input_audio", "input_audio": {"data": data, "format": "wav"}}
        raise BackendError(
            f"openai backend: {part.type} parts must be turned into frames or audio by the task first"
        )

    def body(self, request: Request) -> bytes:
        if request.kind == "loglikelihood":
            from pytest_lmms.models._prompt_logprobs import likelihood_body

            body = likelihood_body(
                self.model_id, self._messages(request), request.continuation or "", self.args.max_tokens_field
            )
            return orjson.dumps(body)
        if request.kind != "generate":
            raise BackendError(f"openai backend: {request.kind} requests are not supported")
        messages = self._messages(request)
        gen = request.gen
        body = {
            "model": self.model_id,
            "messages": messages,
            self.args.max_tokens_field: gen.max_new_tokens,
            "temperature": gen.temperature,
        }
        if gen.top_p != 1.0:
            body["top_p"] = gen.top_p
        if gen.stop:
            body["stop"] = list(gen.stop)
        if gen.seed is not None:
            body["seed"] = gen.seed
        if self.args.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return orjson.dumps(body)

    def _messages(self, request: Request) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        for message in request.messages:
            parts = message.content
            if all(isinstance(p, TextPart) for p in parts):
                messages.append({"role": message.role, "content": message.text})
            else:
                content = []
                for part in parts:
                    if isinstance(part, MediaPart) and part.type == "video":
                        from pytest_lmms.media import video_as_images

                        # frames as images: what OpenAI-compatible servers accept everywhere
                        content += [self._content(frame) for frame in video_as_images(part)]
                    else:
                        content.append(self._content(part))
                messages.append({"role": message.role, "content": content})
        return messages

    # ---- the loop ----------------------------------------------------------------------
    def generate(self, requests: Sequence[Request]) -> list[Response | BaseException]:
        out: list[Response | BaseException | None] = [None] * len(requests)

        def keep(index: int, output: Response | BaseException) -> None:
            out[index] = output

        self.generate_each(requests, keep)
        return [o if o is not None else BackendError("no answer") for o in out]

    def generate_each(self, requests: Sequence[Request], callback: Callback) -> None:
        """Answer every request, calling ``callback(index, output)`` as each one ends."""
        unreachable = self._probe_once()
        if unreachable is not None:
            for index in range(len(requests)):
                callback(index, BackendError(unreachable))
            return
        refusal = self._logprobs_refusal_for(requests)
        if refusal is not None:
            kept = [i for i, request in enumerate(requests) if request.kind != "loglikelihood"]
            for index, request in enumerate(requests):
                if request.kind == "loglikelihood":
                    callback(index, BackendError(refusal))
            if kept:
                asyncio.run(self._run_all([requests[i] for i in kept], lambda i, out: callback(kept[i], out)))
            return
        asyncio.run(self._run_all(requests, callback))

    def _logprobs_refusal_for(self, requests: Sequence[Request]) -> str | None:
        """Before the first likelihood request: one probe of the server's prompt
        log-probabilities; the reason it has none (then every likelihood request fails with
        it), else None."""
        if not self._logprobs_probed and any(request.kind == "loglikelihood" for request in requests):
            self._logprobs_probed = True
            self._logprobs_refusal = asyncio.run(self._probe_logprobs())
        return self._logprobs_refusal

    async def _probe_logprobs(self) -> str | None:
        import aiohttp

        from pytest_lmms.models._prompt_logprobs import PROBE_MESSAGES, likelihood_body, probe_refusal

        body = likelihood_body(self.model_id, PROBE_MESSAGES[:1], "Hi", self.args.max_tokens_field)
        url = f"{self.replicas.replicas[0].url}{self.ENDPOINT}"
        headers = {
            "Content-Type": "application/json",
            **self.auth_headers(os.environ.get(self.args.api_key_env)),
        }
        timeout = aiohttp.ClientTimeout(total=self.args.timeout_s)
        try:
            async with (
                aiohttp.ClientSession(headers=headers, timeout=timeout) as session,
                session.post(url, data=orjson.dumps(body)) as http,
            ):
                status, payload = http.status, await http.read()
        except TimeoutError:
            return None  # slow, not lacking: the requests themselves will time out or answer
        except aiohttp.ClientError as exc:
            return f"{self.name} backend: the probe of {url} failed: {exc}"
        try:
            data: Any = orjson.loads(payload)
        except orjson.JSONDecodeError:
            data = payload[:200].decode("utf-8", "replace")
        if status in RETRYABLE_STATUS:
            return None  # busy, not lacking: the requests themselves will retry
        return probe_refusal(status, data, url, self.name)

    def _probe_once(self) -> str | None:
        """One TCP connect to the endpoint before the first request: a server that is not
        running is one clear error naming its URL, not retries and backoff per sample."""
        if not self._probed:
            self._probed = True
            self._unreachable = self.replicas.check_before_sending()
        return self._unreachable

    async def _run_all(self, requests: Sequence[Request], callback: Callback) -> None:
        import aiohttp

        headers = {
            "Content-Type": "application/json",
            **self.auth_headers(os.environ.get(self.args.api_key_env)),
        }
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
        timeout = aiohttp.ClientTimeout(total=self.args.timeout_s)
        async with aiohttp.ClientSession(connector=connector, headers=headers, timeout=timeout) as session:
            bodies: asyncio.Queue[tuple[int, bytes | Exception] | None] = asyncio.Queue(BODIES_AHEAD)
            producer = asyncio.create_task(self._build_bodies(requests, bodies))
            tasks: set[asyncio.Task[None]] = set()
            replicas = self.replicas
            prober = asyncio.create_task(replicas.keep_probing(session)) if replicas.several else None

            def start(index: int, body: bytes, key: str, replica: Replica, sent_at: float) -> None:
                task = asyncio.create_task(self._one(session, index, body, callback, sent_at, replica, key))
                tasks.add(task)
                task.add_done_callback(tasks.discard)

            def key_of(index: int) -> str:
                if not replicas.several:
                    return ""
                try:
                    return requests[index].prefix_key
                except Exception:  # noqa: BLE001 - unreadable media fails when its body is built
                    return str(index)

            try:
                await replicas.probe_out(session)  # replicas out since an earlier batch
                await replicas.dispatch(bodies, key_of, start, callback)
                await producer
                if tasks:
                    await asyncio.gather(*tasks)
            finally:
                producer.cancel()
                if prober is not None:
                    prober.cancel()

    async def _build_bodies(
        self, requests: Sequence[Request], out: asyncio.Queue[tuple[int, bytes | Exception] | None]
    ) -> None:
        """Request bodies, in order, ahead of dispatch. Text-only ones are built on the loop
        (microseconds); ones with media (base64, video frames) on a worker thread in chunks
        growing from one, so the first request leaves at once and a thread round trip is
        paid per chunk, not per request."""
        loop = asyncio.get_running_loop()
        start, size = 0, 1
        while start < len(requests):
            chunk = requests[start : start + size]
            try:
                if any(_has_media(request) for request in chunk):
                    built = await loop.run_in_executor(None, self._bodies_of, chunk)
                else:
                    built = self._bodies_of(chunk)
            except Exception as exc:  # noqa: BLE001 - the executor itself failed: fail the chunk
                built = [exc] * len(chunk)
            for offset, body in enumerate(built):
                await out.put((start + offset, body))
            start += len(chunk)
            size = min(BODY_CHUNK, size * 2)
        await out.put(None)  # awaited: the sentinel must not be lost to a full queue

    def _bodies_of(self, requests: Sequence[Request]) -> list[bytes | Exception]:
        built: list[bytes | Exception] = []
        for request in requests:
            try:
                built.append(self.body(request))
            except Exception as exc:  # noqa: BLE001 - this request fails, the rest go on
                built.append(exc)
        return built

    async def _one(
        self,
        session: Any,
        index: int,
        body: bytes,
        callback: Callback,
        sent_at: float,
        replica: Replica,
        key: str,
    ) -> None:
        """One request, holding a slot of ``replica``: retried with backoff, and moved at once
        (not counted as a retry) when its replica is taken out."""
        last: BaseException | None = None
        holding: Replica | None = replica  # whose limiter slot this request holds
        attempt = moves = 0
        moving = False
        try:
            while attempt <= self.args.max_retries:
                fatal = self.fatal_error()
                if fatal is not None:
                    callback(index, BackendError(f"{fatal} ({last})" if last else fatal))
                    return
                if attempt and not moving:
                    self.retries += 1
                    delay = self.backoff.delay(attempt - 1, getattr(last, "retry_after_s", None), self._rng)
                    replica.limiter.release()
                    holding = None
                    await asyncio.sleep(delay)
                if holding is None:
                    replica = self.replicas.route(key)
                    sent_at = await replica.limiter.acquire()
                    holding = replica
                moving = False
                try:
                    response = await self._post(session, body, replica)
                    self.replicas.answered(replica)
                    callback(index, response)
                    return
                except RetryableError as exc:
                    last = exc
                    self.rate_limited += exc.status in (429, 529)
                    if exc.overload:
                        replica.limiter.record_overload(exc.retry_after_s, sent_at)
                    gone = exc.connection is not None and self.replicas.failed(
                        replica, exc.connection, str(exc)
                    )
                    if gone and moves < len(self.replicas):
                        moves += 1
                        moving = True
                        replica.limiter.release()
                        holding = None
                        continue
                except BackendError as exc:
                    callback(index, exc)
                    return
                attempt += 1
            callback(index, BackendError(f"gave up after {self.args.max_retries + 1} attempts: {last}"))
        finally:
            if holding is not None:
                holding.limiter.release()

    async def _post(self, session: Any, body: bytes, replica: Replica) -> Response:
        import aiohttp

        self.attempts += 1
        url = f"{replica.url}{self.ENDPOINT}"
        started = time.perf_counter()
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            async with session.post(url, data=body) as http:
                status = http.status
                retry_after = parse_retry_after(http.headers.get("Retry-After"))
                if status == 200 and self.args.stream:
                    events, first_token_s = await self._read_stream(http, started)
                    payload = b""
                else:
                    payload = await http.read()
        except TimeoutError:
            raise RetryableError(
                f"timed out after {self.args.timeout_s:g} s", overload=True, connection="timeout"
            ) from None
        except aiohttp.ClientError as exc:
            raise RetryableError(
                f"connection error: {type(exc).__name__}: {exc}", overload=True, connection=_failure_of(exc)
            ) from None
        finally:
            self.in_flight -= 1
        latency = time.perf_counter() - started
        if status != 200:
            excerpt = payload[:300].decode("utf-8", "replace")
            if status in RETRYABLE_STATUS:
                raise RetryableError(f"HTTP {status}: {excerpt}", status=status, retry_after_s=retry_after)
            raise BackendError(f"HTTP {status} from {url}: {excerpt}")
        try:
            if self.args.stream:
                response = self.parse_stream(events, latency, first_token_s)
            else:
                response = self.parse_answer(orjson.loads(payload), body, latency)
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise RetryableError(
                f"malformed response body ({type(exc).__name__}): {payload[:200]!r}"
            ) from None
        replica.limiter.record_success(latency)
        return response

    async def _read_stream(self, http: Any, started: float) -> tuple[list[Any], float | None]:
        """Server-sent events up to [DONE], and the time to the first content token."""
        events: list[Any] = []
        first_token_s: float | None = None
        async for raw in http.content:
            line = raw.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                break
            try:
                event = orjson.loads(data)
            except orjson.JSONDecodeError:
                raise RetryableError(f"malformed stream event: {data[:200]!r}") from None
            if first_token_s is None and any(
                (choice.get("delta") or {}).get("content") for choice in event.get("choices") or []
            ):
                first_token_s = time.perf_counter() - started
            events.append(event)
        return events, first_token_s

    def parse_stream(self, events: list[Any], latency: float, ttft_s: float | None) -> Response:
        """A Response from the events of a streamed completion."""
        pieces: list[str] = []
        usage: dict[str, Any] = {}
        finish = None
        for event in events:
            for choice in event.get("choices") or []:
                content = (choice.get("delta") or {}).get("content")
                if content:
                    pieces.append(content)
                finish = choice.get("finish_reason") or finish
            usage = event.get("usage") or usage
        if not events:
            raise KeyError("the stream carried no event")
        return Response(
            text="".join(pieces),
            input_tokens=usage.get("prompt_tokens"),
            output_tokens=usage.get("completion_tokens"),
            latency_s=latency,
            ttft_s=ttft_s,
            meta={"finish_reason": finish},
        )

    def auth_headers(self, key: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"} if key else {}

    def parse_answer(self, data: Any, body: bytes, latency: float) -> Response:
        """A Response from a decoded body: prompt log-probabilities for a likelihood request
        (its body asks for them), else ``parse``."""
        if b'"prompt_logprobs"' in body:
            from pytest_lmms.models._prompt_logprobs import continuation_of, parse_prompt_logprobs

            return parse_prompt_logprobs(data, continuation_of(orjson.loads(body)), latency)
        return self.parse(data, latency)

    def parse(self, data: Any, latency: float) -> Response:
        """A Response from a decoded body; KeyError / TypeError on a malformed one."""
        choice = data["choices"][0]
        text = choice["message"]["content"]
        if text is None:
            refusal = choice["message"].get("refusal")
            raise BackendError(f"no content in the response{f' (refusal: {refusal})' if refusal else ''}")
        usage = data.get("usage") or {}
        return Response(
            text=str(text),
            input_tokens=usage.get("prompt_tokens"),
            output_tokens=usage.get("completion_tokens"),
            latency_s=latency,
            meta={"finish_reason": choice.get("finish_reason")},
        )

    def fatal_error(self) -> str | None:
        """A reason no retry can succeed (a launched server that died); None to keep trying."""
        return self._unreachable

    def close(self) -> None:
        pass
