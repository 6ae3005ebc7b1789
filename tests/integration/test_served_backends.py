"""vllm / sglang backends: the launch, health, log, shutdown and crash paths, with a
stand-in server executable (tests/fake_model_server.py) on a loopback port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pytest_lmms.models import BackendError, create_backend
from pytest_lmms.types import Message, Request, Response, TextPart
from tests.helpers import qa_rows, qa_task_yaml, write_jsonl

STAND_IN = f"{sys.executable} {Path(__file__).resolve().parents[1] / 'fake_model_server.py'}"


def ask(text: str, doc_id: str = "0") -> Request:
    return Request(task="t", doc_id=doc_id, messages=(Message("user", (TextPart(text),)),))


@pytest.fixture(autouse=True)
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PYTEST_LMMS_RUN_DIR", str(tmp_path / "run"))
    return tmp_path / "run"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "State:\tZ" in status.read_text())


def wait_until(condition, seconds: float = 15.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize(
    ("backend", "expected_flags"),
    [
        (
            "vllm",
            [
                "serve",
                "org/model",
                "--served-model-name",
                "org/model",
                "--tensor-parallel-size",
                "2",
                "--max-model-len",
                "4096",
                "--trust-remote-code",
            ],
        ),
        (
            "sglang",
            [
                "--model-path",
                "org/model",
                "--served-model-name",
                "org/model",
                "--tp-size",
                "2",
                "--context-length",
                "4096",
                "--trust-remote-code",
            ],
        ),
    ],
)
def test_launch_answer_log_and_shutdown(backend: str, expected_flags: list[str], run_dir: Path) -> None:
    client = create_backend(
        f"{backend}:org/model",
        {
            "executable": STAND_IN,
            "tensor_parallel_size": "2",
            "max_model_len": "4096",
            "trust_remote_code": "true",
        },
    )
    outputs = client.generate([ask("q reply A"), ask("q2 reply B", "1")])
    assert [o.text for o in outputs if isinstance(o, Response)] == ["A", "B"]
    server = client.server
    assert server is not None and server.log_path.parent == run_dir
    log = server.log_path.read_text()
    argv = log.split("fake model server argv:")[1].splitlines()[0].split()
    for flag in expected_flags:
        assert flag in argv
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    pid = server.process.pid  # type: ignore[union-attr]
    client.close()
    assert not alive(pid)
    assert dict(client.identity()) == {"backend": backend, "model": "org/model", "max_model_len": "4096"}


def test_a_server_that_fails_to_start_names_its_log(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_SERVER_FAIL", "1")
    client = create_backend("vllm:m", {"executable": STAND_IN})
    with pytest.raises(
        BackendError, match=r"exited with code 3 while starting; log: .*vllm-server-.*\.log"
    ) as info:
        client.generate([ask("reply A")])
    assert "CUDA out of memory (injected)" in str(info.value)


def test_a_server_that_dies_mid_run_fails_the_rest_fast_naming_its_log(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FAKE_SERVER_DIE_AFTER", "3")
    client = create_backend("vllm:m", {"executable": STAND_IN, "max_concurrency": "1", "max_retries": "50"})
    outputs = client.generate([ask(f"q{i} reply {i}", str(i)) for i in range(6)])
    answered = [o for o in outputs if isinstance(o, Response)]
    errors = [o for o in outputs if isinstance(o, BaseException)]
    assert len(answered) == 3 and len(errors) == 3
    assert all("the vllm server exited with code 9; log:" in str(e) for e in errors)
    assert "fatal: engine died (injected)" in client.server.log_tail()  # type: ignore[union-attr]
    client.close()


def test_attaching_to_a_running_server_launches_nothing(openai_server) -> None:  # type: ignore[no-untyped-def]
    client = create_backend("vllm:m", {"base_url": openai_server.url})
    assert client.generate([ask("reply Z")])[0].text == "Z"  # type: ignore[union-attr]
    assert client.server is None
    with pytest.raises(ValueError, match="cannot apply"):
        create_backend("vllm:m", {"base_url": openai_server.url, "tensor_parallel_size": "2"})


def test_the_server_dies_with_a_killed_session(tmp_path: Path) -> None:
    pidfile = tmp_path / "server.pid"
    script = textwrap.dedent(
        f"""
        import os, sys, time
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        os.environ["FAKE_SERVER_PIDFILE"] = {str(pidfile)!r}
        from pytest_lmms.models import create_backend
        from tests.integration.test_served_backends import ask
        client = create_backend("vllm:m", {{"executable": {STAND_IN!r}}})
        client.generate([ask("reply A")])
        print("ready", flush=True)
        time.sleep(60)
        """
    )
    session = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=tmp_path
    )
    assert session.stdout is not None and session.stdout.readline().strip() == "ready"
    server_pid = int(pidfile.read_text())
    assert alive(server_pid)
    session.send_signal(signal.SIGKILL)
    session.wait(10)
    assert wait_until(lambda: not alive(server_pid)), "the server outlived the killed session"


def test_the_server_stops_when_a_pytest_session_is_interrupted(
    lmms_project: pytest.Pytester, tmp_path: Path
) -> None:
    write_jsonl(lmms_project.path / "qa.jsonl", qa_rows(3))
    lmms_project.makefile(".yaml", qa=qa_task_yaml("qa", "qa.jsonl"))
    pidfile = tmp_path / "server.pid"
    env = {**os.environ, "FAKE_SERVER_PIDFILE": str(pidfile), "FAKE_SERVER_SLOW_START": "30"}
    session = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "--model=vllm:m",
            f"--model-args=executable={STAND_IN}",
            "--no-lmms-cache",
        ],
        cwd=lmms_project.path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert wait_until(pidfile.exists, 30)
    server_pid = int(pidfile.read_text())
    session.send_signal(signal.SIGINT)
    output, _ = session.communicate(timeout=60)
    assert session.returncode == pytest.ExitCode.INTERRUPTED, output
    assert wait_until(lambda: not alive(server_pid)), "the server outlived the interrupted session"
