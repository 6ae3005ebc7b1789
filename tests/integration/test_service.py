"""The evaluation service end to end: a real ``pytest-lmms serve`` process on 127.0.0.1,
real pytest-lmms sessions as jobs, the client over HTTP."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from pytest_lmms.client import AuthError, EvalClient, JobFailed, NotFound, ServiceError  # noqa: E402
from pytest_lmms.report import read_results  # noqa: E402
from tests.helpers import SCRIPTED_BACKEND, model_calls, qa_rows, qa_task_yaml, write_jsonl  # noqa: E402

OFFLINE = Path(__file__).parents[2] / "benchmarks" / "offline"
# a credential the server's environment holds: it must never leave it
SECRET = "sk-lmms-service-test-0123456789abcdef"
STARTUP_TIMEOUT_S = 30.0
JOB_TIMEOUT_S = 120.0


class Server:
    """One ``pytest-lmms serve`` process; ``url`` is read from the line it prints."""

    def __init__(self, store: Path, tasks_dir: Path, env: dict[str, str], *args: str) -> None:
        self.store, self.tasks_dir, self.env, self.args = store, tasks_dir, env, args
        self.process: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self) -> Server:
        command = [sys.executable, "-m", "pytest_lmms.cli", "serve", "--store", str(self.store)]
        command += ["--port", "0", "--tasks-dir", str(self.tasks_dir), *self.args]
        self.process = subprocess.Popen(
            command, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        first = self.process.stdout.readline()
        assert first.startswith("pytest-lmms serve: http://"), first + self.process.stderr.read()
        self.url = first.split()[2]
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not self._healthy():
            assert time.monotonic() < deadline, "the server did not answer /health"
            time.sleep(0.1)
        return self

    def _healthy(self) -> bool:
        request = urllib.request.Request(self.url + "/health")
        token = self.env.get("_TEST_TOKEN")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=2):
                return True
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, as when a machine loses the process."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdout, self.process.stderr) if self.process else ():
            if stream is not None:
                stream.close()
        _kill_left_sessions(self.store)


def _kill_left_sessions(store: Path) -> None:
    """Sessions a killed server left running (each is its own process group)."""
    import sqlite3

    db_path = store / "jobs.sqlite3"
    if not db_path.exists():
        return
    with sqlite3.connect(db_path) as db:
        rows = db.execute("SELECT id, pid FROM jobs WHERE pid IS NOT NULL").fetchall()
    for job_id, pid in rows:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if job_id in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def tasks_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The offline suite plus a scripted QA task (its answers come from the documents)."""
    root = tmp_path_factory.mktemp("service-tasks")
    shutil.copytree(OFFLINE, root / "offline")
    (root / "conftest.py").write_text(SCRIPTED_BACKEND)
    write_jsonl(root / "qa" / "qa.jsonl", qa_rows(24, wrong=(3, 7)))
    (root / "qa" / "qa.yaml").write_text(qa_task_yaml("qa", "qa.jsonl"))
    return root


def _server_env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCRIPTED_", "PYTEST_XDIST"))}
    env.pop("PYTEST_ADDOPTS", None)
    env["OPENAI_API_KEY"] = SECRET
    env["SCRIPTED_LOG"] = str(tmp / "model_calls.log")
    env.update(extra)
    return env


@pytest.fixture
def start_server(tasks_dir: Path, tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Starts servers (same store unless told); every one is stopped at the end."""
    started: list[Server] = []

    def start(*args: str, store: Path | None = None, **env: str) -> Server:
        server = Server(store or tmp_path / "store", tasks_dir, _server_env(tmp_path, **env), *args)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def shared_server(tasks_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the tests that need no special settings (scripted batches are slow
    enough, 0.2 s, that a job can be cancelled while it runs)."""
    tmp = tmp_path_factory.mktemp("service-shared")
    server = Server(tmp / "store", tasks_dir, _server_env(tmp, SCRIPTED_SLEEP="0.2"))
    server.start()
    yield server
    server.stop()


def _command_line_results(tasks_dir: Path, tmp: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    """The same session run directly, for comparison."""
    command = [sys.executable, "-m", "pytest", str(tasks_dir), "-p", "no:cacheprovider", *args]
    command += [f"--lmms-output={tmp / 'direct'}", "--lmms-run-name=direct", f"--lmms-cache={tmp / 'cache'}"]
    done = subprocess.run(command, cwd=tmp, env=env, capture_output=True, text=True, timeout=JOB_TIMEOUT_S)
    assert done.returncode in (0, 1), done.stdout[-2000:] + done.stderr[-2000:]
    return read_results(tmp / "direct" / "direct")


def _metric_blocks(tasks: dict[str, Any]) -> dict[str, Any]:
    return {name: task["metrics"] for name, task in tasks.items()}


def _encoded_metric_blocks(results: Any) -> dict[str, Any]:
    from pytest_lmms.report import encode

    return _metric_blocks(encode(results)["tasks"])


def _wait_for(predicate: Callable[[], bool], what: str, timeout: float = JOB_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _raw(
    url: str, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _files_text(root: Path) -> bytes:
    return b"".join(path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file())


# ---- jobs end to end ---------------------------------------------------------------------


def test_a_random_job_gives_the_command_lines_results_and_no_secret_leaks(
    shared_server: Server, tasks_dir: Path, tmp_path: Path
) -> None:
    client = EvalClient(shared_server.url)
    job = client.submit("random:0", ["shapes_color", "shapes_count"], limit=6, tags=["e2e"])
    finished = client.wait(job["id"], timeout=JOB_TIMEOUT_S)
    assert finished["state"] == "done" and finished["exit_code"] in (0, 1)
    assert finished["progress"] == {"samples_done": 12}
    served = client.results(job["id"])

    direct = _command_line_results(
        tasks_dir, tmp_path, "--model=random:0", "--tasks=shapes_color,shapes_count", "--limit=6"
    )
    assert _metric_blocks(served["tasks"]) == _encoded_metric_blocks(direct)
    assert served["model"]["spec"] == "random:0"
    assert [j["id"] for j in client.list(tag="e2e")] == [job["id"]]
    assert [j["id"] for j in client.list(state="done", tag="e2e")] == [job["id"]]

    # the page at / lists the job with each task's score and interval
    status, page = _raw(shared_server.url + "/")
    block = served["tasks"]["shapes_color"]["metrics"]["choice_accuracy"]
    assert status == 200 and job["id"] in page
    assert (
        f"shapes_color choice_accuracy {block['value']:.4f} [{block['ci_low']:.4f}, {block['ci_high']:.4f}]"
        in page
    )
    assert "<script" not in page and "://" not in page  # self-contained: no external asset

    # the key in the server's environment: not in the store, the logs, or any answer
    answers = json.dumps([finished, served, client.list()]) + client.log(job["id"], tail=10_000)
    assert SECRET not in answers
    assert SECRET.encode() not in _files_text(shared_server.store)


def test_the_same_idempotency_key_returns_the_same_job(shared_server: Server) -> None:
    client = EvalClient(shared_server.url)
    first = client.submit("random:1", "shapes_color", idempotency_key="ckpt-100:abc", limit=2)
    again = client.submit("random:1", "shapes_color", idempotency_key="ckpt-100:abc", limit=2)
    assert again["id"] == first["id"]
    assert [j["id"] for j in client.list() if j["idempotency_key"] == "ckpt-100:abc"] == [first["id"]]
    client.wait(first["id"], timeout=JOB_TIMEOUT_S)


def test_cancel_stops_a_running_job_and_the_next_job_runs(shared_server: Server) -> None:
    client = EvalClient(shared_server.url)
    slow = client.submit("scripted:cancel-me", "qa", model_args={"batch_size": 1})
    _wait_for(lambda: client.get(slow["id"])["progress"]["samples_done"] >= 2, "the job to answer samples")
    client.cancel(slow["id"])
    with pytest.raises(JobFailed, match="cancelled") as failed:
        client.wait(slow["id"], timeout=JOB_TIMEOUT_S)
    assert failed.value.job["state"] == "cancelled"
    stopped_at = client.get(slow["id"])["progress"]["samples_done"]
    assert stopped_at < 24
    # its GPU-less slot is free again: a job queued after it finishes
    after = client.submit("random:2", "shapes_color", limit=2)
    assert client.wait(after["id"], timeout=JOB_TIMEOUT_S)["state"] == "done"
    assert client.get(slow["id"])["progress"]["samples_done"] == stopped_at  # nothing ran on
    with pytest.raises(ServiceError, match="already cancelled"):
        client.cancel(slow["id"])


def test_the_log_streams_until_the_job_ends(shared_server: Server) -> None:
    client = EvalClient(shared_server.url)
    job = client.submit("scripted:streamed", "qa", limit=6, model_args={"batch_size": 1})
    _wait_for(lambda: client.get(job["id"])["state"] == "running", "the job to start")
    with urllib.request.urlopen(
        f"{shared_server.url}/jobs/{job['id']}/log?follow=true", timeout=60
    ) as stream:
        text = stream.read().decode()  # returns when the server ends the stream
    assert client.get(job["id"])["state"] == "done"
    assert "== attempt 1" in text and "results:" in text  # from the start to the session's last lines
    assert client.log(job["id"], tail=1).strip() == text.strip().splitlines()[-1]


# ---- bad requests ------------------------------------------------------------------------


def _post(server: Server, body: bytes, content_type: str = "application/json") -> tuple[int, str]:
    return _raw(server.url + "/jobs", "POST", body, {"Content-Type": content_type})


def _post_chunked(server: Server, body: bytes) -> tuple[int, str]:
    import http.client

    host, _, port = server.url.removeprefix("http://").partition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request(
            "POST",
            "/jobs",
            body=iter([body[i : i + 8192] for i in range(0, len(body), 8192)]),
            headers={"Content-Type": "application/json"},
            encode_chunked=True,
        )
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def test_bad_requests_get_4xx_with_the_field_named(shared_server: Server) -> None:
    client = EvalClient(shared_server.url)
    with pytest.raises(ServiceError, match=r"HTTP 422: body.tasks: .*did you mean shapes_color"):
        client.submit("random:0", ["shapes_colr"])
    with pytest.raises(ServiceError, match=r"HTTP 422: body.tasks.0: String should match pattern"):
        client.submit("random:0", ["../../etc/passwd"])
    with pytest.raises(ServiceError, match=r"body.limit: Input should be greater than or equal to 1"):
        client.submit("random:0", ["shapes_color"], limit=0)
    with pytest.raises(ServiceError, match=r"body.trust_remote_code: Extra inputs are not permitted"):
        client.submit("random:0", ["shapes_color"], trust_remote_code=True)
    with pytest.raises(
        ServiceError, match=r"body.model_args.trust_remote_code: trust_remote_code is refused"
    ):
        client.submit("random:0", ["shapes_color"], model_args={"trust_remote_code": "true"})

    status, text = _post(shared_server, b'{"model": "random:0", "tasks": [')
    assert status == 422 and "JSON decode error" in text
    status, text = _post(
        shared_server, json.dumps({"model": "random:0", "tasks": ["x" * 10]}).encode() * 9000
    )
    assert status == 413 and "request body over" in text

    # a credential in a request is refused, and its value is not echoed or stored
    leaked = "sk-pasted-into-a-request-42"
    for body in (
        {"model": "random:0", "tasks": ["shapes_color"], "model_args": {"api_key": leaked}},
        {"model": "random:0", "tasks": ["shapes_color"], "gen_kwargs": {"hf_token": leaked}},
        {"model": "random:0", "tasks": ["shapes_color"], "api_key": leaked},
    ):
        status, text = _post(shared_server, json.dumps(body).encode())
        assert status == 422, text
        assert leaked not in text
    assert (
        "looks like a credential"
        in _post(
            shared_server,
            json.dumps(
                {"model": "random:0", "tasks": ["shapes_color"], "model_args": {"api_key": leaked}}
            ).encode(),
        )[1]
    )
    assert leaked.encode() not in _files_text(shared_server.store)

    # job ids are the server's: anything else, traversal included, is not found
    with pytest.raises(NotFound):
        client.get("0" * 32)
    for name in ("..%2F..%2Fjobs.sqlite3", "..%2Fjobs.sqlite3/results", "%2e%2e/%2e%2e/etc/passwd"):
        status, _text = _raw(f"{shared_server.url}/jobs/{name}")
        assert status == 404, name


def test_model_paths_outside_the_allowed_roots_are_refused(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    allowed = tmp_path / "checkpoints"
    allowed.mkdir()
    server = start_server("--allow-path", str(allowed))
    client = EvalClient(server.url)
    with pytest.raises(ServiceError, match=r"body.model: the path is outside the server's --allow-path"):
        client.submit(f"hf:{allowed}/../elsewhere", ["shapes_color"])
    with pytest.raises(ServiceError, match=r"body.model_args.tokenizer: the path is outside"):
        client.submit("hf:x", ["shapes_color"], model_args={"tokenizer": "/etc"})
    job = client.submit(f"scripted:{allowed}/step-10", ["qa"], limit=2)
    assert client.wait(job["id"], timeout=JOB_TIMEOUT_S)["state"] == "done"


# ---- authentication ----------------------------------------------------------------------


def test_with_a_token_every_request_needs_it(start_server: Callable[..., Server], tmp_path: Path) -> None:
    token = "t0k3n-for-the-service-tests-only"
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    server = start_server("--token-file", str(token_file), _TEST_TOKEN=token)
    for client in (EvalClient(server.url), EvalClient(server.url, token="wrong-token-of-some-length")):
        with pytest.raises(AuthError, match="missing or wrong bearer token"):
            client.list()
    status, _ = _raw(server.url + "/openapi.json")
    assert status == 401
    good = EvalClient(server.url, token=token)
    job = good.submit("random:0", "shapes_color", limit=1)
    assert good.wait(job["id"], timeout=JOB_TIMEOUT_S)["state"] == "done"


def test_a_non_loopback_bind_without_a_token_refuses_to_start(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest_lmms.cli",
            "serve",
            "--store",
            str(tmp_path / "s"),
            "--host",
            "0.0.0.0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "binding 0.0.0.0 (not loopback) needs --token-file" in done.stderr
    assert not (tmp_path / "s").exists()  # refused before anything was made


# ---- durability --------------------------------------------------------------------------


def test_a_job_running_when_the_server_is_killed_completes_after_restart_from_the_cache(
    start_server: Callable[..., Server], tasks_dir: Path, tmp_path: Path
) -> None:
    server = start_server(SCRIPTED_SLEEP="0.2")
    client = EvalClient(server.url)
    job = client.submit("scripted:durable", "qa", model_args={"batch_size": 2})
    queued = client.submit("random:5", "shapes_color", limit=2)  # waits behind it (one CPU slot)
    _wait_for(lambda: client.get(job["id"])["progress"]["samples_done"] >= 6, "the job to answer samples")
    assert client.get(queued["id"])["state"] == "queued"
    server.kill()

    server = start_server()  # same store; no sleep this time
    client = EvalClient(server.url)
    finished = client.wait(job["id"], timeout=JOB_TIMEOUT_S)
    assert finished["state"] == "done"
    assert finished["attempts"] == 2  # it was interrupted and re-queued, not submitted again
    assert finished["progress"] == {"samples_done": 24}
    assert client.wait(queued["id"], timeout=JOB_TIMEOUT_S)["attempts"] == 1  # kept, run once

    calls = model_calls(tmp_path / "model_calls.log")
    assert sorted(set(calls), key=int) == [str(i) for i in range(24)]
    # what the first session cached was not asked again (one batch may have been answered
    # but not yet cached when the session was stopped)
    assert len(calls) <= 24 + 2

    direct_env = _server_env(tmp_path)
    direct_env.pop("SCRIPTED_LOG")
    direct = _command_line_results(
        tasks_dir,
        tmp_path,
        "--model=scripted:durable",
        "--model-args=batch_size=2",
        "--tasks=qa",
        env=direct_env,
    )
    assert _metric_blocks(client.results(job["id"])["tasks"]) == _encoded_metric_blocks(direct)


# ---- scheduling --------------------------------------------------------------------------


def test_two_jobs_run_at_once_on_disjoint_gpus_and_a_third_waits(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    env_log = tmp_path / "env.log"
    server = start_server("--gpus", "0,1,2,3", SCRIPTED_SLEEP="0.3", SCRIPTED_ENV_LOG=str(env_log))
    client = EvalClient(server.url)
    jobs = [
        client.submit(f"scripted:gpu-{i}", "qa", limit=8, gpus=2, model_args={"batch_size": 2})
        for i in range(3)
    ]
    ids = [job["id"] for job in jobs]

    def states() -> list[str]:
        return [client.get(job_id)["state"] for job_id in ids]

    _wait_for(lambda: states()[:2] == ["running", "running"], "two jobs to run at once")
    running = [client.get(job_id) for job_id in ids[:2]]
    assert client.get(ids[2])["state"] == "queued"  # no GPUs are left for it
    assert sorted(running[0]["gpus"] + running[1]["gpus"]) == [0, 1, 2, 3]
    for job_id in ids:
        assert client.wait(job_id, timeout=JOB_TIMEOUT_S)["state"] == "done"
    third = client.get(ids[2])
    assert third["started"] >= min(client.get(i)["finished"] for i in ids[:2])
    # each session saw only its own GPUs
    seen = {line.split()[1] for line in env_log.read_text().splitlines()}
    assert seen <= {"0,1", "2,3"} and len(seen) == 2


def test_a_job_asking_for_more_gpus_than_the_server_has_fails_with_a_message(
    start_server: Callable[..., Server],
) -> None:
    client = EvalClient(start_server("--gpus", "0").url)
    job = client.submit("scripted:big", "qa", gpus=2)
    with pytest.raises(JobFailed, match="asks for 2 GPUs; the server has 1"):
        client.wait(job["id"], timeout=JOB_TIMEOUT_S)


# ---- fuzzing -----------------------------------------------------------------------------


def test_a_fuzz_run_of_the_openapi_schema_finds_no_server_error(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    st = Path(sys.executable).with_name("st")
    if not st.exists():
        pytest.skip("schemathesis is not installed")
    server = start_server()
    done = subprocess.run(
        [
            str(st),
            "run",
            f"{server.url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "10",
        ]
        # the fuzzing phase only, positive and negative cases: a few seconds
        + ["--phases", "fuzzing", "--generation-deterministic", "--request-timeout", "20"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-4000:]


def test_a_tiny_hf_job_gives_the_command_lines_results(
    start_server: Callable[..., Server], tasks_dir: Path, tmp_path: Path, lmms_home: Path
) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from pytest_lmms.models._tiny import tiny_model_path

    tiny_model_path()  # built once in this session's home, then read by both runs
    env = {"PYTEST_LMMS_HOME": str(lmms_home), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    client = EvalClient(start_server(**env).url)
    job = client.submit("hf:tiny-qwen2-vl", ["shapes_color"], limit=3)
    assert client.wait(job["id"], timeout=300)["state"] == "done"
    direct_env = {**_server_env(tmp_path), **env}
    direct_env.pop("SCRIPTED_LOG")
    direct = _command_line_results(
        tasks_dir, tmp_path, "--model=hf:tiny-qwen2-vl", "--tasks=shapes_color", "--limit=3", env=direct_env
    )
    served = client.results(job["id"])
    assert served["tasks"]["shapes_color"]["metrics"]["choice_accuracy"]["n"] == 3
    assert _metric_blocks(served["tasks"]) == _encoded_metric_blocks(direct)


# ---- training loop -----------------------------------------------------------------------


def test_the_trainer_callback_submits_each_checkpoint_and_logs_its_scores(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")  # the Trainer needs it
    from pytest_lmms.service import EvalCallback

    server = start_server()
    config = transformers.GPT2Config(vocab_size=32, n_positions=16, n_embd=16, n_layer=1, n_head=2)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config)
    rows = [
        {"input_ids": torch.arange(i, i + 8) % 32, "labels": torch.arange(i, i + 8) % 32} for i in range(8)
    ]
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "train"),
        max_steps=4,
        save_steps=2,
        logging_steps=1,
        per_device_train_batch_size=2,
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
    )
    # the scripted backend answers from the documents, whatever checkpoint it is given
    callback = EvalCallback(server.url, ["qa"], backend="scripted", limit=4, wait_at_end=120, tags=["run-a"])
    trainer = transformers.Trainer(model=model, args=args, train_dataset=rows, callbacks=[callback])
    trainer.train()

    client = EvalClient(server.url)
    jobs = client.list(tag="run-a")
    assert sorted(job["tags"][0] for job in jobs) == ["step-2", "step-4"]
    assert {job["model"] for job in jobs} == {
        f"scripted:{(tmp_path / 'train' / f'checkpoint-{step}').resolve()}" for step in (2, 4)
    }
    logged = {entry["step"]: entry for entry in trainer.state.log_history if "lmms/step" in entry}
    assert sorted(logged) == [2, 4]
    for job in jobs:
        step = int(job["tags"][0].removeprefix("step-"))
        block = client.results(job["id"])["tasks"]["qa"]["metrics"]["exact_match"]
        assert logged[step]["lmms/qa/exact_match"] == block["value"]
        assert logged[step]["lmms/qa/exact_match_ci_low"] == block["ci_low"]

    # a restarted trainer saving the same checkpoint again submits nothing new
    again = EvalCallback(server.url, ["qa"], backend="scripted", limit=4, tags=["run-a"])
    state = transformers.TrainerState(global_step=4)
    again.on_save(args, state, transformers.TrainerControl())
    assert len(client.list(tag="run-a")) == 2


def _fake_checkpoint(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"\0" * 64)
    return folder


def test_the_watcher_submits_each_new_checkpoint_once_across_restarts(
    start_server: Callable[..., Server], tmp_path: Path
) -> None:
    server = start_server()
    client = EvalClient(server.url)
    train = tmp_path / "train"
    _fake_checkpoint(train / "checkpoint-1")
    command = [sys.executable, "-m", "pytest_lmms.cli", "watch", str(train), "--server", server.url]
    command += ["--tasks", "qa", "--backend", "scripted", "--limit", "2", "--tag", "watched"]
    watcher = subprocess.Popen(
        [*command, "--interval", "0.2", "--settle", "0.5"], stdout=subprocess.PIPE, text=True
    )
    try:
        _wait_for(lambda: len(client.list(tag="watched")) == 1, "the first checkpoint's job")
        _fake_checkpoint(train / "checkpoint-2")  # appears while the watcher runs
        _wait_for(lambda: len(client.list(tag="watched")) == 2, "the second checkpoint's job")
    finally:
        watcher.terminate()
        watcher.wait(timeout=20)
        assert watcher.stdout is not None
        watcher.stdout.close()
    jobs = client.list(tag="watched")
    assert sorted(tag for job in jobs for tag in job["tags"] if tag.startswith("step-")) == [
        "step-1",
        "step-2",
    ]

    # a restarted watcher finds both folders again and submits nothing twice
    again = subprocess.run([*command, "--once", "--settle", "0"], capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr
    assert len(client.list(tag="watched")) == 2
    assert {job["id"] for job in jobs} <= {line.split()[2] for line in again.stdout.splitlines()}
    for job in jobs:
        assert client.wait(job["id"], timeout=JOB_TIMEOUT_S)["state"] == "done"
