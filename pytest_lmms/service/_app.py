"""The HTTP API of the evaluation service (FastAPI)."""

from __future__ import annotations

import asyncio
import hmac
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pytest_lmms.service._scheduler import Scheduler, SchedulerConfig
from pytest_lmms.service._store import FINISHED, JOB_STATES, Job, JobStore

MAX_BODY_BYTES = 64 * 1024
JOB_ID = r"^[0-9a-f]{32}$"
# a name a request may give (tasks, tags, keys): no slashes, no dots-only, no spaces
SAFE_NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.:*?\[\]+-]{0,199}$"
SAFE_KEY = r"^[A-Za-z0-9_.:/@+-]{1,200}$"
# request fields that would carry a credential; max_new_tokens and the like do not match
SECRET_FIELD = re.compile(
    r"(^|_)(api_?key|key|token|secret|password|passwd|credentials?|auth|authorization|bearer)$", re.I
)
Scalar = str | int | float | bool


class JobRequest(BaseModel):
    """What POST /jobs accepts; unknown fields are refused, so a typo is an error."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(pattern=r"^[A-Za-z0-9_.-]+:[^\s,]{1,500}$", description="BACKEND:MODEL_ID")
    model_args: dict[str, Scalar] = Field(default_factory=dict)
    tasks: list[Annotated[str, Field(pattern=SAFE_NAME)]] = Field(min_length=1, max_length=200)
    limit: int | None = Field(default=None, ge=1)
    seed: int | None = None
    repeats: int | None = Field(default=None, ge=1, le=1000)
    gen_kwargs: dict[str, Scalar] = Field(default_factory=dict)
    gpus: int = Field(default=0, ge=0, le=1024)
    priority: int = Field(default=0, ge=-1000, le=1000)
    tags: list[Annotated[str, Field(pattern=SAFE_NAME)]] = Field(default_factory=list, max_length=50)
    idempotency_key: str | None = Field(default=None, pattern=SAFE_KEY)

    @field_validator("model_args", "gen_kwargs")
    @classmethod
    def _no_credentials(cls, value: dict[str, Scalar]) -> dict[str, Scalar]:
        for key, item in value.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,99}", key):
                raise ValueError(f"{key!r} is not a setting name")
            if SECRET_FIELD.search(key):
                raise ValueError(
                    f"{key!r} looks like a credential: give API keys to the server's environment, "
                    "never in a request"
                )
            if isinstance(item, str) and any(c in item for c in ",\n\r\x00"):
                raise ValueError(f"{key}: commas, newlines and NUL are not allowed in a value")
        return value


@dataclass
class ServiceSettings:
    store: Path
    tasks_dirs: Sequence[Path]
    gpus: Sequence[int] = ()
    token: str | None = None
    allow_paths: Sequence[Path] = ()
    allow_remote_code: bool = False
    cpu_slots: int = 1
    max_body_bytes: int = MAX_BODY_BYTES
    extra_env: dict[str, str] = field(default_factory=dict)


def _looks_like_path(value: str) -> bool:
    return value.startswith(("/", ".", "~")) or "/../" in value or value.endswith("/..")


class Service:
    """The checks between a request and the store; shared by the routes."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.store = JobStore(settings.store)
        self.scheduler = Scheduler(
            self.store,
            SchedulerConfig(
                tasks_dirs=settings.tasks_dirs,
                gpus=settings.gpus,
                cpu_slots=settings.cpu_slots,
                extra_env=settings.extra_env,
            ),
        )
        self._index: Any = None

    def task_index(self, refresh: bool = False) -> Any:
        from pytest_lmms.tasks import discover

        if self._index is None or refresh:
            self._index = discover(self.settings.tasks_dirs)
        return self._index

    def check(self, request: JobRequest) -> None:
        """422 naming the field for what the schema cannot see: unknown tasks, paths outside
        the allowed roots, remote code."""
        from pytest_lmms.tasks import TaskConfigError

        try:
            self.task_index().select(request.tasks)
        except TaskConfigError:
            try:
                self.task_index(refresh=True).select(request.tasks)  # a task added since start
            except TaskConfigError as exc:
                raise _field_error(["body", "tasks"], str(exc)) from None
        remote = request.model_args.get("trust_remote_code")
        if remote not in (None, False, "false", "False", "0", 0) and not self.settings.allow_remote_code:
            raise _field_error(
                ["body", "model_args", "trust_remote_code"],
                "trust_remote_code is refused: the server was not started with --allow-remote-code",
            )
        model_id = request.model.partition(":")[2]
        candidates = [(["body", "model"], model_id)] + [
            (["body", "model_args", key], value)
            for key, value in request.model_args.items()
            if isinstance(value, str)
        ]
        for where, value in candidates:
            if _looks_like_path(value):
                self._check_path(where, value)

    def _check_path(self, where: list[str], value: str) -> None:
        roots = self.settings.allow_paths
        if not roots:
            return
        resolved = Path(value).expanduser().resolve()
        if not any(resolved.is_relative_to(root.resolve()) for root in roots):
            raise _field_error(where, "the path is outside the server's --allow-path roots")


def _field_error(loc: list[str], message: str) -> RequestValidationError:
    return RequestValidationError([{"loc": tuple(loc), "msg": message, "type": "value_error"}])


def job_view(store: JobStore, job: Job, with_results: bool = True) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": job.id,
        "state": job.state,
        "model": job.model,
        "tasks": list(job.spec.get("tasks", [])),
        "tags": list(job.tags),
        "gpus_requested": job.gpus_requested,
        "gpus": list(job.gpus),
        "priority": job.priority,
        "idempotency_key": job.idempotency_key,
        "attempts": job.attempts,
        "exit_code": job.exit_code,
        "error": job.error,
        "created": job.created,
        "started": job.started,
        "finished": job.finished,
        "progress": progress(store, job),
    }
    if with_results:
        view["results"] = job.results
    return view


def progress(store: JobStore, job: Job) -> dict[str, int]:
    """Samples answered so far, counted from the run folder's samples files."""
    done = 0
    for path in store.run_dir(job.id).glob("samples_*.jsonl"):
        try:
            with open(path, "rb") as handle:
                done += sum(1 for line in handle if line.strip())
        except OSError:
            continue
    return {"samples_done": done}


def _strip_inputs(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Validation errors without the submitted values, so nothing a request held (a key
    pasted in the wrong field) is echoed back."""
    return [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")} for e in errors
    ]


class _BodyLimit:
    """ASGI middleware: bodies over the limit get 413 before any of them is parsed."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await _plain(send, 413, f"request body over {self.limit} bytes")
            return
        # the body is read here, bounded, then handed on whole: a chunked body has no
        # Content-Length, and an app that already began parsing cannot answer 413 cleanly
        chunks: list[bytes] = []
        size, more = 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                await _plain(send, 413, f"request body over {self.limit} bytes")
                return
            more = message.get("more_body", False)
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class _BearerAuth:
    """ASGI middleware: with a token set, every request needs ``Authorization: Bearer``."""

    def __init__(self, app: Any, token: str) -> None:
        self.app, self.expected = app, f"Bearer {token}".encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                await _plain(send, 401, "missing or wrong bearer token", {b"www-authenticate": b"Bearer"})
                return
        await self.app(scope, receive, send)


async def _plain(send: Any, status: int, detail: str, headers: Mapping[bytes, bytes] | None = None) -> None:
    import json

    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            + list((headers or {}).items()),
        }
    )
    await send({"type": "http.response.body", "body": body})


def create_app(settings: ServiceSettings) -> Any:
    """The ASGI application: the API wrapped in the body limit and, with a token, auth."""
    service = Service(settings)
    api = _api(service)
    app: Any = _BodyLimit(api, settings.max_body_bytes)
    if settings.token:
        app = _BearerAuth(app, settings.token)
    app.service = service  # for the server's start-up and tests
    return app


def _api(service: Service) -> FastAPI:
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        service.scheduler.start()
        yield
        service.scheduler.stop()

    api = FastAPI(title="pytest-lmms evaluation service", version="1", lifespan=lifespan)
    store = service.store

    @api.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": _strip_inputs(exc.errors())})

    def _job_or_404(job_id: str) -> Job:
        job = store.get(job_id) if re.fullmatch(JOB_ID, job_id) else None
        if job is None:
            raise HTTPException(404, f"no job {job_id!r}"[:120])
        return job

    @api.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        from pytest_lmms.service._page import jobs_page

        jobs = store.list_jobs()
        return HTMLResponse(jobs_page([(job, progress(store, job)["samples_done"]) for job in jobs]))

    @api.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "gpus": list(service.settings.gpus)}

    @api.post("/jobs", status_code=201)
    def submit(request: JobRequest) -> JSONResponse:
        service.check(request)
        spec = request.model_dump(exclude={"idempotency_key"})
        job, created = store.submit(spec, request.idempotency_key)
        service.scheduler.wake()
        return JSONResponse(status_code=201 if created else 200, content=job_view(store, job))

    @api.get("/jobs")
    def list_jobs(
        state: Annotated[str | None, Query(pattern="^(" + "|".join(JOB_STATES) + ")$")] = None,
        model: Annotated[str | None, Query(max_length=500)] = None,
        tag: Annotated[str | None, Query(max_length=200)] = None,
    ) -> list[dict[str, Any]]:
        return [job_view(store, job, with_results=False) for job in store.list_jobs(state, model, tag)]

    @api.get("/jobs/{job_id}")
    def get_job(job_id: str) -> dict[str, Any]:
        return job_view(store, _job_or_404(job_id))

    @api.delete("/jobs/{job_id}")
    def cancel_job(job_id: str) -> dict[str, Any]:
        job = _job_or_404(job_id)
        if job.state in FINISHED:
            raise HTTPException(409, f"job {job.id} is already {job.state}")
        service.scheduler.cancel(job.id)
        return job_view(store, _job_or_404(job_id), with_results=False)

    @api.get("/jobs/{job_id}/results")
    def job_results(job_id: str) -> Any:
        job = _job_or_404(job_id)
        if job.results is None:
            raise HTTPException(409, f"job {job.id} has no results ({job.state})")
        return job.results

    @api.get("/jobs/{job_id}/log", response_class=PlainTextResponse)
    async def job_log(
        job_id: str,
        tail: Annotated[int, Query(ge=0, le=100_000)] = 200,
        follow: bool = False,
    ) -> Any:
        job = _job_or_404(job_id)
        path = store.log_path(job.id)
        text = path.read_text(errors="replace") if path.exists() else ""
        lines = text.splitlines(keepends=True)
        head = "".join(lines[-tail:]) if tail else ""
        if not follow:
            return PlainTextResponse(head)
        return StreamingResponse(
            _follow(store, job.id, path, head, len(text.encode())), media_type="text/plain"
        )

    @api.get("/tasks")
    def tasks() -> dict[str, Any]:
        index = service.task_index(refresh=True)
        return {"tasks": sorted(index.tasks), "groups": {k: list(v) for k, v in sorted(index.groups.items())}}

    @api.get("/models")
    def models() -> dict[str, Any]:
        from pytest_lmms.models import available_backends

        return {"backends": sorted(available_backends())}

    return api


async def _follow(store: JobStore, job_id: str, path: Path, head: str, offset: int) -> AsyncIterator[bytes]:
    """The log's tail, then what the session writes, until the job has finished."""
    yield head.encode()
    while True:
        job = store.get(job_id)
        chunk = await _read_from(path, offset)
        offset += len(chunk)
        if chunk:
            yield chunk
        if job is None or job.state in FINISHED:
            return
        await asyncio.sleep(0.5)


async def _read_from(path: Path, offset: int) -> bytes:
    def read() -> bytes:
        try:
            with open(path, "rb") as handle:
                handle.seek(offset)
                return handle.read()
        except OSError:
            return b""

    reader: Callable[[], bytes] = read
    result: Awaitable[bytes] = asyncio.to_thread(reader)
    return await result
