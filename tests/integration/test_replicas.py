"""Several replicas behind one run: real loopback servers (tests/fake_openai.py), one of
which stops answering mid-run; routing by media, failover, rejoin, the first-probe check
and the concurrency budget split under xdist."""

from __future__ import annotations

import io
import json
import re
import socket
import threading
import time
import warnings
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from pytest_lmms.config import parse_kv
from pytest_lmms.models import BackendError, create_backend
from pytest_lmms.models._replicas import ReplicaWarning, parse_endpoints, worker_share
from pytest_lmms.types import MediaPart, MediaRef, Message, Request, Response, TextPart
from tests.fake_openai import FakeOpenAI
from tests.helpers import qa_task_yaml, write_jsonl

QUESTIONS_PER_IMAGE = 3


def png(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (shade, 40, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


def image_requests(images: int, tag: str = "") -> list[Request]:
    """``QUESTIONS_PER_IMAGE`` questions about each of ``images`` images (one prefix key each)."""
    requests = []
    for image in range(images):
        data = png(image)
        for question in range(QUESTIONS_PER_IMAGE):
            parts = (
                MediaPart(MediaRef("image", data)),
                TextPart(f"{tag}img{image} q{question} reply a{image}"),
            )
            requests.append(
                Request(task="t", doc_id=f"{image}-{question}", messages=(Message("user", parts),))
            )
    return requests


def closed_port_url() -> str:
    """A loopback URL nothing listens at."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def servers_by_image(servers: list[FakeOpenAI]) -> dict[str, set[int]]:
    """For each image (``img<N>`` in the prompt), which servers answered questions on it."""
    answered: dict[str, set[int]] = defaultdict(set)
    for number, server in enumerate(servers):
        for prompt in server.answered:
            image = re.search(r"\bimg\d+", prompt)
            assert image is not None, prompt
            answered[image.group()].add(number)
    return answered


def answers_per_prompt(servers: list[FakeOpenAI]) -> dict[str, int]:
    total: dict[str, int] = defaultdict(int)
    for server in servers:
        for prompt, count in server.answered.items():
            total[prompt] += count
    return total


def wait_until(condition: Any, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


@pytest.fixture
def three_servers() -> Iterator[list[FakeOpenAI]]:
    servers = [FakeOpenAI(delay_s=0.002) for _ in range(3)]
    yield servers
    for server in servers:
        server.kill()


@pytest.fixture(autouse=True)
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PYTEST_LMMS_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    return tmp_path / "run"


# ---- naming the endpoints -------------------------------------------------------------------
def test_endpoints_are_a_bar_separated_list_or_a_file_of_urls(tmp_path: Path) -> None:
    # the --model-args parser splits on commas, so the list survives it whole
    args = parse_kv("base_url=http://a:8000/v1|http://b:8000/v1/,timeout=2", "--model-args")
    assert parse_endpoints(args["base_url"]) == ("http://a:8000/v1", "http://b:8000/v1")
    listed = tmp_path / "urls.txt"
    listed.write_text(
        "# the data-parallel replicas\nhttp://n1:8000/v1\n\nhttp://n2:8000/v1  # node 2\nhttp://n1:8000/v1\n"
    )
    assert parse_endpoints(f"@{listed}") == ("http://n1:8000/v1", "http://n2:8000/v1")
    with pytest.raises(ValueError, match=r"openai backend: base_url: 'n3:8000' is not an http\(s\) URL"):
        create_backend("openai:m", {"base_url": "http://n1:8000/v1|n3:8000"})
    with pytest.raises(ValueError, match="cannot read the file of endpoint URLs"):
        create_backend("openai:m", {"base_url": f"@{tmp_path / 'missing.txt'}"})


def test_a_session_takes_its_replicas_from_a_config_list_or_a_file_of_urls(
    lmms_project: pytest.Pytester, three_servers: list[FakeOpenAI]
) -> None:
    _image_task(lmms_project, 8)
    listed = "".join(f"  - {server.url}\n" for server in three_servers[:2])
    lmms_project.makefile(".yaml", _run=f"model: openai:served\nmodel_args:\n  base_url:\n{listed}")
    result = lmms_project.runpytest("--lmms-config=_run.yaml", "--no-lmms-cache", "--lmms-output=results")
    _all_answered(result, 8 * QUESTIONS_PER_IMAGE)
    assert three_servers[0].answered and three_servers[1].answered and not three_servers[2].bodies
    (lmms_project.path / "urls.txt").write_text(f"{three_servers[2].url}\n")
    result = lmms_project.runpytest(
        "--model=openai:served", "--model-args=base_url=@urls.txt", "--no-lmms-cache", "--lmms-output=results"
    )
    _all_answered(result, 8 * QUESTIONS_PER_IMAGE)
    assert len(three_servers[2].answered) == 8 * QUESTIONS_PER_IMAGE


# ---- a run across replicas, one dying ---------------------------------------------------------
def _image_task(project: pytest.Pytester, images: int) -> None:
    rows = []
    for image in range(images):
        Image.open(io.BytesIO(png(image))).save(project.path / f"img{image}.png")
        for question in range(QUESTIONS_PER_IMAGE):
            rows.append(
                {
                    "id": f"{image}-{question}",
                    "image": f"img{image}.png",
                    "question": f"img{image}-{question}",
                    "answer": f"a{image}",
                    # every third image is answered wrong, so the score is not trivially 1
                    "reply": "nope" if image % 3 == 0 else f"a{image}",
                }
            )
    write_jsonl(project.path / "qa.jsonl", rows)
    project.makefile(".yaml", qa=qa_task_yaml("qa", "qa.jsonl", "doc_to_visual: image\ncluster_key: image\n"))


def _run(project: pytest.Pytester, base_url: str, cache: str, name: str) -> tuple[Any, dict[str, Any]]:
    result = project.runpytest(
        "--model=openai:served",
        f"--model-args=base_url={base_url},timeout=5,probe_interval=0.2",
        f"--lmms-cache={cache}",
        "--lmms-output=results",
        f"--lmms-run-name={name}",
    )
    data = json.loads((project.path / "results" / name / "results.json").read_text())
    return result, data


def _all_answered(result: Any, samples: int) -> None:
    """Every sample answered and scored (a third of them wrong, by design), none failed."""
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) + outcomes.get("wrong", 0) == samples and "failed" not in outcomes, (
        outcomes
    )


def _scores(data: dict[str, Any]) -> dict[str, Any]:
    """A task block without what depends on timing or on the run's folder."""
    block = dict(data["tasks"]["qa"])
    for timing in ("throughput", "timings", "wall_s", "started", "finished", "samples_file"):
        block.pop(timing, None)
    return block


def _table(result: Any) -> list[str]:
    """The summary table's lines."""
    lines = result.stdout.lines
    start = next(i for i, line in enumerate(lines) if "pytest-lmms results" in line)
    end = next(i for i, line in enumerate(lines) if line.startswith("model openai:"))
    return lines[start:end]


def _samples(project: pytest.Pytester, name: str) -> list[tuple[str, str, Any]]:
    lines = (project.path / "results" / name / "samples_qa.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    return sorted((r["doc_id"], r["response"], r["scores"]) for r in records)


def test_a_run_across_three_replicas_one_dying_equals_a_run_against_one(
    lmms_project: pytest.Pytester, three_servers: list[FakeOpenAI], openai_server: FakeOpenAI
) -> None:
    images = 24
    _image_task(lmms_project, images)
    single, single_data = _run(lmms_project, openai_server.url, "cache-single", "single")
    _all_answered(single, images * QUESTIONS_PER_IMAGE)

    dying = three_servers[1]
    dying.die_after = 8  # stops answering (connections refused, open ones dropped) mid-run
    urls = "|".join(server.url for server in three_servers)
    replicated, replicated_data = _run(lmms_project, urls, "cache-replicas", "replicas")
    _all_answered(replicated, images * QUESTIONS_PER_IMAGE)

    # the same scores, intervals and samples as against one endpoint
    assert _scores(replicated_data) == _scores(single_data)
    assert _table(replicated) == _table(single)
    assert _samples(lmms_project, "replicas") == _samples(lmms_project, "single")
    # every sample answered once, across the three servers
    answered = answers_per_prompt(three_servers)
    assert len(answered) == images * QUESTIONS_PER_IMAGE and set(answered.values()) == {1}
    # the questions on one image went to one replica; only an image the dying replica was
    # answering when it went is split, between it and one other
    assert dying.dead and 0 < sum(dying.answered.values()) <= 8
    for servers in servers_by_image(three_servers).values():
        assert len(servers) == 1 or (len(servers) == 2 and 1 in servers), servers
    # its requests went to the others: the live ones answered all the rest
    live = sum(sum(server.answered.values()) for server in (three_servers[0], three_servers[2]))
    assert live == images * QUESTIONS_PER_IMAGE - sum(dying.answered.values())
    # and the run says so, naming it
    (log,) = (lmms_project.path / "results" / "replicas").glob("openai-replicas-*.log")
    assert f"replica {dying.url} stopped answering" in log.read_text()
    replicated.stdout.fnmatch_lines([f"*ReplicaWarning: pytest-lmms: replica {dying.url} stopped answering*"])

    # which replica answered is no part of the cache key: the three-replica run reads the
    # single-endpoint run's cache and asks nobody
    before = [len(server.bodies) for server in three_servers]
    cached, cached_data = _run(lmms_project, urls, "cache-single", "cached")
    _all_answered(cached, images * QUESTIONS_PER_IMAGE)
    assert [len(server.bodies) for server in three_servers] == before
    assert _scores(cached_data) == _scores(single_data)


# ---- routing and failover, on the backend ------------------------------------------------------
def test_questions_on_one_image_go_to_one_replica(three_servers: list[FakeOpenAI]) -> None:
    client = create_backend("openai:m", {"base_url": "|".join(s.url for s in three_servers)})
    outputs = client.generate(image_requests(30))
    assert all(isinstance(output, Response) for output in outputs)
    by_image = servers_by_image(three_servers)
    assert len(by_image) == 30 and all(len(servers) == 1 for servers in by_image.values())
    assert all(server.answered for server in three_servers)  # and the images are spread over all three


def test_a_full_replica_does_not_hold_back_the_others() -> None:
    """One replica taking nothing more (its one slot held) while the other answers every
    request routed to it: the dispatcher looks past the full one."""
    stuck, free = FakeOpenAI(), FakeOpenAI()
    try:
        client = create_backend("openai:m", {"base_url": f"{stuck.url}|{free.url}", "max_concurrency": "1"})
        requests = image_requests(12)
        free_share = sum(client.replicas.route(r.prefix_key).url == free.url for r in requests)
        assert 0 < free_share < len(requests)
        free_done = threading.Event()
        free.on_request = lambda n: free_done.set() if n + 1 == free_share else None
        # the stuck replica's first request waits until the other replica got all of its share
        stuck.on_request = lambda n: free_done.wait(10) if n == 0 else None
        outputs = client.generate(requests)
        assert all(isinstance(output, Response) for output in outputs)
        assert free_done.is_set() and len(stuck.bodies) == len(requests) - free_share
    finally:
        stuck.kill()
        free.kill()


def test_a_replica_that_answers_again_takes_its_requests_back(run_dir: Path) -> None:
    steady, flaky = FakeOpenAI(), FakeOpenAI()
    flaky.die_after = 3
    restarted: list[FakeOpenAI] = []
    rejoined = threading.Event()
    try:
        client = create_backend(
            "openai:m",
            {"base_url": f"{steady.url}|{flaky.url}", "max_concurrency": "2", "probe_interval": "0.05"},
        )

        def restart_once_taken_out() -> None:
            if wait_until(lambda: not client.replicas.by_url(flaky.url).up):
                again = FakeOpenAI(port=flaky.port)  # the replica restarted on its port
                again.on_request = lambda n: rejoined.set()
                restarted.append(again)

        threading.Thread(target=restart_once_taken_out, daemon=True).start()
        # the steady replica holds its later requests until the restarted one got one, so
        # the run is still going when the probe finds it back
        steady.on_request = lambda n: rejoined.wait(10) if n >= 4 else None
        requests = image_requests(20)
        with pytest.warns(ReplicaWarning, match=f"replica {flaky.url} stopped answering"):
            outputs = client.generate(requests)
        assert all(isinstance(output, Response) for output in outputs)
        assert rejoined.is_set()
        (again,) = restarted
        assert again.answered  # the restarted replica took requests back in the same run
        answered = answers_per_prompt([steady, flaky, again])
        assert len(answered) == len(requests) and set(answered.values()) == {1}
        assert [s["rejoined"] for s in client.replicas.stats()] == [0, 1]
        log = next(run_dir.glob("openai-replicas-*.log")).read_text()
        assert f"replica {flaky.url} stopped answering" in log
        assert f"replica {flaky.url} answers again" in log
    finally:
        for server in (steady, flaky, *restarted):
            server.kill()


def test_a_replica_out_since_the_last_batch_is_probed_before_the_next(run_dir: Path) -> None:
    steady, flaky = FakeOpenAI(), FakeOpenAI()
    flaky.die_after = 2
    again: FakeOpenAI | None = None
    try:
        client = create_backend(
            "openai:m", {"base_url": f"{steady.url}|{flaky.url}", "probe_interval": "600"}
        )
        with pytest.warns(ReplicaWarning, match=f"replica {flaky.url} stopped answering"):
            assert all(isinstance(o, Response) for o in client.generate(image_requests(12, "first ")))
        assert not client.replicas.by_url(flaky.url).up
        again = FakeOpenAI(port=flaky.port)
        assert all(isinstance(o, Response) for o in client.generate(image_requests(12, "second ")))
        assert client.replicas.by_url(flaky.url).up and again.answered
    finally:
        for server in (steady, flaky, again):
            if server is not None:
                server.kill()


# ---- the one probe before sending ------------------------------------------------------------
def test_a_replica_down_before_the_run_is_a_warning_and_the_others_answer(
    openai_server: FakeOpenAI, run_dir: Path
) -> None:
    down = closed_port_url()
    client = create_backend("openai:m", {"base_url": f"{openai_server.url}|{down}"})
    with pytest.warns(ReplicaWarning, match=rf"replica {down} does not answer \(cannot connect to {down}"):
        outputs = client.generate(image_requests(10))
    assert all(isinstance(output, Response) for output in outputs)
    assert len(openai_server.answered) == 10 * QUESTIONS_PER_IMAGE
    assert f"replica {down} does not answer" in next(run_dir.glob("openai-replicas-*.log")).read_text()


def test_no_replica_answering_fails_every_request_at_once_naming_them() -> None:
    first, second = closed_port_url(), closed_port_url()
    client = create_backend("openai:m", {"base_url": f"{first}|{second}"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no warning per replica: one error says it all
        outputs = client.generate(image_requests(4))
    assert all(isinstance(output, BackendError) for output in outputs)
    message = str(outputs[0])
    assert message.startswith("cannot connect to any of the 2 endpoints")
    assert first in message and second in message and "no request was sent" in message
    assert client.attempts == 0


# ---- one budget for all xdist workers ------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"max_concurrency": "8"}, [(3, 3), (3, 3), (2, 2)]),  # fixed: initial = maximum = the share
        ({}, [(3, 171), (3, 171), (2, 170)]),  # adaptive: initial 8 and maximum 512, shared
    ],
)
def test_xdist_workers_split_one_concurrency_budget(
    monkeypatch: pytest.MonkeyPatch, args: dict[str, str], expected: list[tuple[int, int]]
) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "3")
    limits = []
    for worker in range(3):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", f"gw{worker}")
        client = create_backend("openai:m", {"base_url": "http://a:1/v1|http://b:1/v1", **args})
        controllers = [replica.limiter.controller for replica in client.replicas.replicas]
        assert len({(c.initial, c.maximum) for c in controllers}) == 1  # each replica its own, alike
        limits.append((controllers[0].initial, controllers[0].maximum))
    assert limits == expected


def test_a_worker_keeps_to_its_share_against_a_real_server(monkeypatch: pytest.MonkeyPatch) -> None:
    server = FakeOpenAI(delay_s=0.02)
    try:
        monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
        monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
        client = create_backend("openai:m", {"base_url": server.url, "max_concurrency": "6"})
        outputs = client.generate(image_requests(8))
        assert all(isinstance(output, Response) for output in outputs)
        assert server.max_in_flight == 3  # half of 6: the other worker has the other half
    finally:
        server.kill()


def test_a_launched_server_is_the_workers_own_and_an_attached_one_is_shared(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "4")
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    launched = create_backend("vllm:m", {"max_concurrency": "8"})
    attached = create_backend("vllm:m", {"base_url": "http://a:1/v1|http://b:1/v1", "max_concurrency": "8"})
    assert launched.limiter.controller.maximum == 8
    assert [r.limiter.controller.maximum for r in attached.replicas.replicas] == [2, 2]
    assert worker_share(10, {"PYTEST_XDIST_WORKER_COUNT": "4", "PYTEST_XDIST_WORKER": "gw1"}) == 3
    assert (
        sum(
            worker_share(10, {"PYTEST_XDIST_WORKER_COUNT": "4", "PYTEST_XDIST_WORKER": f"gw{i}"})
            for i in range(4)
        )
        == 10
    )
    assert worker_share(2, {"PYTEST_XDIST_WORKER_COUNT": "4", "PYTEST_XDIST_WORKER": "gw3"}) == 1


def test_under_xdist_the_workers_together_keep_to_one_budget(lmms_project: pytest.Pytester) -> None:
    server = FakeOpenAI(delay_s=0.05)
    try:
        _image_task(lmms_project, 16)
        result = lmms_project.runpytest(
            "-p",
            "xdist",
            "-n",
            "2",
            "--model=openai:served",
            f"--model-args=base_url={server.url},max_concurrency=2",
            "--no-lmms-cache",
            "--lmms-output=results",
        )
        _all_answered(result, 16 * QUESTIONS_PER_IMAGE)
        # one request at a time each: alone, each worker would have taken 2
        assert server.max_in_flight <= 2 and len(server.answered) == 16 * QUESTIONS_PER_IMAGE
    finally:
        server.kill()
