"""Clients of the evaluation service (``pytest-lmms serve``).

``EvalClient`` uses only the standard library; ``AsyncEvalClient`` uses aiohttp (the api
extra). Errors raise typed exceptions carrying the server's own message.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

FINISHED_STATES = ("done", "failed", "cancelled")


class ServiceError(RuntimeError):
    """The server answered with an error (or could not be reached); ``status`` is its HTTP code."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class AuthError(ServiceError):
    """401: no token, or the wrong one."""


class NotFound(ServiceError):
    """404: no such job."""


class JobFailed(ServiceError):
    """The job ended failed or cancelled; ``job`` is its last state."""

    def __init__(self, message: str, job: Mapping[str, Any]) -> None:
        super().__init__(message)
        self.job = dict(job)


def _message(body: bytes) -> str:
    """The server's ``detail`` as one line: field errors as 'body.tasks: message'."""
    try:
        detail = json.loads(body).get("detail", body.decode(errors="replace"))
    except (ValueError, AttributeError):
        return body.decode(errors="replace")[:500]
    if isinstance(detail, list):
        return "; ".join(
            ".".join(str(part) for part in item.get("loc", [])) + f": {item.get('msg')}" for item in detail
        )
    return str(detail)


def _error(status: int, body: bytes) -> ServiceError:
    message = _message(body)
    if status == 401:
        return AuthError(message, status)
    if status == 404:
        return NotFound(message, status)
    return ServiceError(f"HTTP {status}: {message}", status)


def _job_request(
    model: str, tasks: list[str] | str, idempotency_key: str | None, options: Mapping[str, Any]
) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "tasks": [tasks] if isinstance(tasks, str) else list(tasks)}
    if idempotency_key is not None:
        body["idempotency_key"] = idempotency_key
    body.update({k: v for k, v in options.items() if v is not None})
    return body


def _finished(job: Mapping[str, Any]) -> Mapping[str, Any]:
    if job["state"] in ("failed", "cancelled"):
        raise JobFailed(f"job {job['id']} {job['state']}: {job.get('error') or 'no error message'}", job)
    return job


class EvalClient:
    """A synchronous client: ``EvalClient("http://127.0.0.1:8765", token=...)``."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def _call(self, method: str, path: str, body: Any = None, query: Mapping[str, Any] | None = None) -> Any:
        url = self.url + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            raise _error(exc.code, exc.read()) from None
        except (urllib.error.URLError, OSError) as exc:
            raise ServiceError(f"cannot reach {self.url}: {exc}") from None
        return json.loads(payload) if payload else None

    def submit(
        self, model: str, tasks: list[str] | str, idempotency_key: str | None = None, **options: Any
    ) -> dict[str, Any]:
        """Queue a job (``model_args``, ``limit``, ``gpus``, ``tags``, ... as keywords);
        the same ``idempotency_key`` returns the job it made before."""
        return dict(self._call("POST", "/jobs", _job_request(model, tasks, idempotency_key, options)))

    def get(self, job_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/jobs/{urllib.parse.quote(job_id, safe='')}"))

    def list(self, state: str | None = None, model: str | None = None, tag: str | None = None) -> list[Any]:
        return list(self._call("GET", "/jobs", query={"state": state, "model": model, "tag": tag}))

    def cancel(self, job_id: str) -> dict[str, Any]:
        return dict(self._call("DELETE", f"/jobs/{urllib.parse.quote(job_id, safe='')}"))

    def results(self, job_id: str) -> dict[str, Any]:
        """The job's typed results document (as results.json holds it)."""
        return dict(self._call("GET", f"/jobs/{urllib.parse.quote(job_id, safe='')}/results"))

    def log(self, job_id: str, tail: int = 200) -> str:
        path = f"/jobs/{urllib.parse.quote(job_id, safe='')}/log?tail={tail}"
        request = urllib.request.Request(self.url + path)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return str(response.read().decode(errors="replace"))
        except urllib.error.HTTPError as exc:
            raise _error(exc.code, exc.read()) from None

    def wait(self, job_id: str, timeout: float = 3600.0, poll: float = 0.5) -> dict[str, Any]:
        """The job once it has finished; JobFailed if it failed or was cancelled,
        TimeoutError if it is still going after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if job["state"] in FINISHED_STATES:
                return dict(_finished(job))
            if time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} is still {job['state']} after {timeout:g} s")
            time.sleep(poll)


class AsyncEvalClient:
    """The same calls for asyncio code (aiohttp): ``async with AsyncEvalClient(url) as c``."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._session: Any = None

    async def __aenter__(self) -> AsyncEvalClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _call(
        self, method: str, path: str, body: Any = None, query: Mapping[str, Any] | None = None
    ) -> Any:
        import aiohttp

        if self._session is None:
            headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
            self._session = aiohttp.ClientSession(
                headers=headers, timeout=aiohttp.ClientTimeout(total=self.timeout)
            )
        params = {k: v for k, v in (query or {}).items() if v is not None}
        try:
            async with self._session.request(method, self.url + path, json=body, params=params) as response:
                payload = await response.read()
                if response.status >= 400:
                    raise _error(response.status, payload)
        except aiohttp.ClientError as exc:
            raise ServiceError(f"cannot reach {self.url}: {exc}") from None
        return json.loads(payload) if payload else None

    async def submit(
        self, model: str, tasks: list[str] | str, idempotency_key: str | None = None, **options: Any
    ) -> dict[str, Any]:
        return dict(await self._call("POST", "/jobs", _job_request(model, tasks, idempotency_key, options)))

    async def get(self, job_id: str) -> dict[str, Any]:
        return dict(await self._call("GET", f"/jobs/{urllib.parse.quote(job_id, safe='')}"))

    async def list(
        self, state: str | None = None, model: str | None = None, tag: str | None = None
    ) -> list[Any]:
        return list(await self._call("GET", "/jobs", query={"state": state, "model": model, "tag": tag}))

    async def cancel(self, job_id: str) -> dict[str, Any]:
        return dict(await self._call("DELETE", f"/jobs/{urllib.parse.quote(job_id, safe='')}"))

    async def results(self, job_id: str) -> dict[str, Any]:
        return dict(await self._call("GET", f"/jobs/{urllib.parse.quote(job_id, safe='')}/results"))

    async def wait(self, job_id: str, timeout: float = 3600.0, poll: float = 0.5) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            job = await self.get(job_id)
            if job["state"] in FINISHED_STATES:
                return dict(_finished(job))
            if time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} is still {job['state']} after {timeout:g} s")
            await asyncio.sleep(poll)


__all__ = ["AsyncEvalClient", "AuthError", "EvalClient", "JobFailed", "NotFound", "ServiceError"]
