"""Backends that launch an OpenAI-compatible server (vLLM, SGLang) and talk to it.

``base_url=...`` attaches to a server that already runs (one deployment, possibly
multi-node behind one URL, or several data-parallel replicas: ``base_url=URL|URL`` or
``@FILE``, see ``_replicas.py``) instead of launching one; under ``-n`` the workers then
split its concurrency budget, while a launched server is each worker's own. Launched servers listen on a free
loopback port, write their log to the run's folder, and stop with the session.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from pytest_lmms.models._server import ManagedServer, default_log_dir, free_port
from pytest_lmms.models.openai import Callback, OpenAIBackend
from pytest_lmms.types import Request

LAUNCH_ONLY = {"executable", "extra_args", "startup_timeout"}


class ServedBackend(OpenAIBackend):
    name = "served"
    # model argument -> server flag; a value of "true" for FLAG_ONLY args adds the bare flag
    SERVER_FLAGS: ClassVar[dict[str, str]] = {}
    FLAG_ONLY: ClassVar[set[str]] = {"trust_remote_code"}
    # the server arguments that change outputs, so they enter the cache key
    OUTPUT_ARGS: ClassVar[tuple[str, ...]] = ("dtype", "revision", "chat_template", "max_model_len")

    def __init__(self, model_id: str, **args: Any) -> None:
        server_keys = set(self.SERVER_FLAGS) | LAUNCH_ONLY
        self.launch_args = {k: str(args.pop(k)) for k in list(args) if k in server_keys}
        self.attached = "base_url" in args
        if self.attached and self.launch_args:
            raise ValueError(
                f"{self.name} backend: base_url attaches to a running server; server arguments "
                f"{sorted(self.launch_args)} cannot apply"
            )
        args.setdefault("base_url", "http://127.0.0.1:0/v1")  # replaced once the server runs
        try:
            super().__init__(model_id, **args)
        except ValueError as exc:
            raise ValueError(
                str(exc).replace("openai backend", f"{self.name} backend")
                + f"; server arguments: {sorted(server_keys)}"
            ) from None
        self.server: ManagedServer | None = None
        # what the backend is doing before it can answer (read by the progress view)
        self.status: str | None = None

    def identity(self) -> Mapping[str, Any]:
        identity: dict[str, Any] = {"backend": self.name, "model": self.model_id}
        identity.update({k: self.launch_args[k] for k in self.OUTPUT_ARGS if k in self.launch_args})
        return identity

    def shares_endpoint(self) -> bool:
        # a launched server is this worker's own; an attached deployment is everyone's
        return self.attached

    def command(self, port: int) -> list[str]:  # pragma: no cover - each server says
        raise NotImplementedError

    def server_flags(self) -> list[str]:
        flags: list[str] = []
        for arg, flag in self.SERVER_FLAGS.items():
            if arg not in self.launch_args:
                continue
            value = self.launch_args[arg]
            if arg in self.FLAG_ONLY:
                if value.lower() in ("1", "true", "yes"):
                    flags.append(flag)
            else:
                flags += [flag, value]
        flags += shlex.split(self.launch_args.get("extra_args", ""))
        return flags

    def _ensure_server(self) -> None:
        if self.attached or self.server is not None:
            return
        port = free_port()
        log_path = default_log_dir() / f"{self.name}-server-{os.getpid()}-{port}.log"
        server = ManagedServer(
            self.name,
            self.command(port),
            port,
            log_path,
            startup_timeout_s=float(self.launch_args.get("startup_timeout", 900)),
        )
        self.status = f"starting the {self.name} server (log: {log_path})"
        try:
            server.start()
        finally:
            self.status = None
        self.server = server
        self.args = dataclasses.replace(self.args, base_url=server.base_url)
        self.replicas = self.make_replicas([server.base_url])

    def fatal_error(self) -> str | None:
        server = self.server
        if server is not None and server.exit_code() is not None:
            return f"the {self.name} server exited with code {server.exit_code()}; log: {server.log_path}"
        return None

    def generate_each(self, requests: Sequence[Request], callback: Callback) -> None:
        self._ensure_server()
        super().generate_each(requests, callback)

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
