"""A model server the harness launches: start, health, log capture, shutdown.

The server runs in its own process group with its output in a log file. It is stopped
(SIGTERM to the group, then SIGKILL) when the backend closes, at interpreter exit, and,
through Linux's parent-death signal, when the pytest process itself is killed.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from pytest_lmms._process import log_tail, stop_process_group
from pytest_lmms.models._base import BackendError


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    os.setsid()
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def default_log_dir() -> Path:
    """The run's output folder when the session exported it, else ./.lmms-logs."""
    return Path(os.environ.get("PYTEST_LMMS_RUN_DIR") or ".lmms-logs")


class ManagedServer:
    def __init__(
        self,
        name: str,
        command: Sequence[str],
        port: int,
        log_path: Path,
        health_path: str = "/health",
        startup_timeout_s: float = 900.0,
    ) -> None:
        self.name = name
        self.command = list(command)
        self.port = port
        self.log_path = log_path
        self.health_url = f"http://127.0.0.1:{port}{health_path}"
        self.startup_timeout_s = startup_timeout_s
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"$ {' '.join(self.command)}\n".encode())
            log.flush()
            try:
                self.process = subprocess.Popen(
                    self.command,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    preexec_fn=_die_with_parent,  # noqa: PLW1509 - setsid + parent-death signal
                )
            except OSError as exc:
                raise BackendError(
                    f"cannot launch the {self.name} server ({self.command[0]}): {exc}"
                ) from None
        atexit.register(self.stop)
        self._wait_healthy()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            code = self.exit_code()
            if code is not None:
                raise BackendError(
                    f"the {self.name} server exited with code {code} while starting; log: {self.log_path}\n"
                    f"{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(self.health_url, timeout=2) as reply:
                    if reply.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        self.stop()
        raise BackendError(
            f"the {self.name} server did not become healthy within {self.startup_timeout_s:g} s; log: {self.log_path}"
        )

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def log_tail(self, lines: int = 15) -> str:
        return log_tail(self.log_path, lines) or ""

    def stop(self, grace_s: float = 10.0) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        stop_process_group(process, grace_s)
