"""``pytest-lmms serve``: the safety checks before binding, then uvicorn."""

from __future__ import annotations

import ipaddress
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from pytest_lmms.service._app import ServiceSettings, create_app


class ServeError(ValueError):
    """A server that must not start (a public bind without a token, an unreadable token file)."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def read_token(path: Path | None, host: str) -> str | None:
    """The bearer token; binding beyond loopback without one refuses to start."""
    if path is None:
        if not is_loopback(host):
            raise ServeError(
                f"binding {host} (not loopback) needs --token-file: refusing to serve without authentication"
            )
        return None
    try:
        token = Path(path).read_text().strip()
    except OSError as exc:
        raise ServeError(f"--token-file {path}: cannot read: {exc.strerror}") from None
    if len(token) < 16:
        raise ServeError(f"--token-file {path}: the token must have at least 16 characters")
    return token


def parse_gpus(text: str) -> tuple[int, ...]:
    if not text.strip():
        return ()
    try:
        gpus = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ServeError(f"--gpus {text!r}: expected GPU ids like 0,1,2,3") from None
    if len(set(gpus)) != len(gpus) or any(g < 0 for g in gpus):
        raise ServeError(f"--gpus {text!r}: ids must be distinct and non-negative")
    return gpus


def serve(
    store: Path,
    host: str = "127.0.0.1",
    port: int = 8765,
    gpus: Sequence[int] = (),
    token_file: Path | None = None,
    tasks_dirs: Sequence[Path] = (),
    allow_paths: Sequence[Path] = (),
    allow_remote_code: bool = False,
    cpu_slots: int = 1,
) -> None:
    import uvicorn

    from pytest_lmms.tasks import default_search_paths

    token = read_token(token_file, host)
    settings = ServiceSettings(
        store=Path(store).resolve(),
        tasks_dirs=[Path(p).resolve() for p in (tasks_dirs or default_search_paths())],
        gpus=tuple(gpus),
        token=token,
        allow_paths=[Path(p).resolve() for p in allow_paths],
        allow_remote_code=allow_remote_code,
        cpu_slots=cpu_slots,
    )
    app = create_app(settings)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host.strip("[]"), port))
    bound = sock.getsockname()[1]
    # the first line a caller reads: with --port 0 it is the only way to learn the port
    print(f"pytest-lmms serve: http://{host}:{bound} (store {settings.store})", flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        print("pytest-lmms serve: stopped", file=sys.stderr, flush=True)
