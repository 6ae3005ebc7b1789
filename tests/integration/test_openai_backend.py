"""The openai backend against a real OpenAI-compatible server on 127.0.0.1 with faults."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from pytest_lmms.cache import cache_key
from pytest_lmms.models import BackendError, create_backend
from pytest_lmms.models._concurrency import Backoff, parse_retry_after
from pytest_lmms.types import GenParams, MediaPart, MediaRef, Message, Request, Response, TextPart
from tests.fake_openai import FakeOpenAI
from tests.helpers import qa_rows, qa_task_yaml, write_jsonl


def ask(text: str, doc_id: str = "0", image: bytes | None = None, gen: GenParams | None = None) -> Request:
    parts: list = [MediaPart(MediaRef("image", image), "image")] if image else []
    parts.append(TextPart(text))
    return Request(task="t", doc_id=doc_id, messages=(Message("user", tuple(parts)),), gen=gen or GenParams())


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buffer, format="PNG")
    return buffer.getvalue()


def backend(server: FakeOpenAI, **args: str):
    return create_backend("openai:served-model", {"base_url": server.url, "timeout": "0.5", **args})


def test_request_format_auth_and_identity(openai_server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_KEY", "sk-secret")
    client = backend(openai_server, api_key_env="TEST_KEY")
    gen = GenParams(max_new_tokens=7, temperature=0.0, stop=("\n",), seed=3)
    (out,) = client.generate([ask("look: reply B", image=png(), gen=gen)])
    assert isinstance(out, Response) and out.text == "B" and out.output_tokens == 1
    body = openai_server.bodies[0]
    assert body["model"] == "served-model" and body["max_tokens"] == 7 and body["stop"] == ["\n"]
    assert body["seed"] == 3 and body["temperature"] == 0.0
    image_part, text_part = body["messages"][0]["content"]
    assert image_part["image_url"]["url"].startswith("data:image/png;base64,iVBOR")
    assert text_part == {"type": "text", "text": "look: reply B"}
    assert openai_server.headers[0]["Authorization"] == "Bearer sk-secret"
    identity = dict(client.identity())
    assert identity == {"backend": "openai", "model": "served-model"}
    other = create_backend(
        "openai:served-model", {"base_url": "http://127.0.0.1:1/v1", "max_concurrency": "2"}
    )
    assert cache_key(identity, ask("x")) == cache_key(other.identity(), ask("x"))
    assert "sk-secret" not in repr(client.__dict__)


@pytest.mark.parametrize("fault", ["@429x2", "@500x1", "@503x1", "@timeoutx1", "@malformedx1", "@dropx1"])
def test_transient_faults_are_retried_until_answered(openai_server: FakeOpenAI, fault: str) -> None:
    client = backend(openai_server, max_retries="4")
    outputs = client.generate([ask(f"q {fault} reply A", "0"), ask("q2 reply C", "1")])
    assert [o.text for o in outputs if isinstance(o, Response)] == ["A", "C"]
    expected_attempts = int(fault.rpartition("x")[2]) + 1
    assert openai_server.calls(fault) == expected_attempts


def test_retries_and_rate_limits_are_counted_for_the_progress_view(openai_server: FakeOpenAI) -> None:
    client = backend(openai_server, max_retries="4")
    client.generate([ask("q @429x2 reply A", "0"), ask("q @500x1 reply B", "1"), ask("q reply C", "2")])
    assert client.retries == 3 and client.rate_limited == 2


def test_permanent_server_errors_give_up_with_the_last_error(openai_server: FakeOpenAI) -> None:
    client = backend(openai_server, max_retries="2")
    failed, fine = client.generate([ask("q @500 reply A", "0"), ask("q reply B", "1")])
    assert isinstance(failed, BackendError) and "gave up after 3 attempts: HTTP 500" in str(failed)
    assert isinstance(fine, Response) and fine.text == "B"
    assert openai_server.calls("@500") == 3


def test_client_errors_are_not_retried(openai_server: FakeOpenAI) -> None:
    (failed,) = backend(openai_server).generate([ask("q @400 reply A")])
    assert isinstance(failed, BackendError) and "HTTP 400" in str(failed) and "injected 400" in str(failed)
    assert openai_server.calls("@400") == 1


def test_retry_after_is_honoured(openai_server: FakeOpenAI) -> None:
    openai_server.retry_after = "0.3"
    backend(openai_server).generate([ask("q @429x1 reply A")])
    first, second = next(v for k, v in openai_server.attempts.items() if "@429" in k)
    assert second - first >= 0.29


def test_a_fixed_concurrency_limit_is_never_exceeded() -> None:
    server = FakeOpenAI(delay_s=0.03)
    try:
        outputs = backend(server, max_concurrency="3").generate(
            [ask(f"q{i} reply {i}", str(i)) for i in range(24)]
        )
        assert [o.text for o in outputs] == [str(i) for i in range(24)]  # type: ignore[union-attr]
        assert server.max_in_flight == 3
    finally:
        server.close()


def test_adaptive_concurrency_grows_while_the_server_keeps_up() -> None:
    server = FakeOpenAI(delay_s=0.01)
    try:
        client = backend(server, initial_concurrency="2")
        client.generate([ask(f"q{i} reply {i}", str(i)) for i in range(120)])
        assert server.max_in_flight > 2
    finally:
        server.close()


def test_backoff_and_retry_after_parsing() -> None:
    import random

    rng = random.Random(1)
    delays = [Backoff(base_s=0.5, cap_s=4).delay(attempt, None, rng) for attempt in range(8)]
    assert all(0 <= d <= min(4, 0.5 * 2**a) for a, d in enumerate(delays))
    assert Backoff().delay(0, 7.0, rng) == 7.0
    assert (
        parse_retry_after("2") == 2.0
        and parse_retry_after(None) is None
        and parse_retry_after("soon") is None
    )
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_bad_arguments_name_the_backend() -> None:
    with pytest.raises(ValueError, match="unknown argument.*'temprature'"):
        create_backend("openai:m", {"temprature": "1"})
    with pytest.raises(ValueError, match="served model name"):
        create_backend("openai:", {})


def test_a_run_against_the_server_fails_only_broken_samples_and_a_rerun_completes_them(
    lmms_project: pytest.Pytester, openai_server: FakeOpenAI
) -> None:
    rows = qa_rows(8)
    for i in (2, 5):
        rows[i]["reply"] = f"ans{i} @500"
    rows[3]["reply"] = "ans3 @429x1"
    write_jsonl(lmms_project.path / "qa.jsonl", rows)
    lmms_project.makefile(".yaml", qa=qa_task_yaml("qa", "qa.jsonl"))
    args = (
        "--model=openai:served",
        f"--model-args=base_url={openai_server.url},max_retries=1,timeout=2",
        "--lmms-cache=cache",
        "--lmms-output=results",
    )
    result = lmms_project.runpytest(*args)
    result.assert_outcomes(passed=6, failed=2)
    result.stdout.fnmatch_lines(
        ["*qa[[]2[]]: model call failed: BackendError: gave up after 2 attempts: HTTP 500*"]
    )
    samples = "".join(p.read_text() for p in Path(lmms_project.path / "results").glob("*/samples_qa.jsonl"))
    assert '"doc_id":"2"' not in samples and '"doc_id":"5"' not in samples
    before = len(openai_server.bodies)
    openai_server.healed = True
    rerun = lmms_project.runpytest(*args)
    rerun.assert_outcomes(passed=8)
    assert len(openai_server.bodies) - before == 2  # only the two failed samples were asked again


def test_anthropic_messages_format_headers_and_retries(
    openai_server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "ak-secret")
    base_url = openai_server.url.removesuffix("/v1")
    client = create_backend("anthropic:claude-test", {"base_url": base_url, "timeout": "0.5"})
    system = Message("system", (TextPart("be brief"),))
    user = Message("user", (MediaPart(MediaRef("image", png()), "image"), TextPart("look @529x1 reply D")))
    request = Request(
        task="t", doc_id="0", messages=(system, user), gen=GenParams(max_new_tokens=5, stop=("\n",))
    )
    (out,) = client.generate([request])
    assert isinstance(out, Response) and out.text == "D" and out.output_tokens == 1
    body = openai_server.bodies[-1]
    assert body["system"] == "be brief" and body["max_tokens"] == 5 and body["stop_sequences"] == ["\n"]
    image, text = body["messages"][0]["content"]
    assert image["source"]["media_type"] == "image/png" and image["source"]["type"] == "base64"
    assert text == {"type": "text", "text": "look @529x1 reply D"}
    headers = {k.lower(): v for k, v in openai_server.headers[-1].items()}
    assert headers["x-api-key"] == "ak-secret" and headers["anthropic-version"] == "2023-06-01"
    assert openai_server.calls("@529") == 2  # the overloaded answer was retried
    assert dict(client.identity()) == {"backend": "anthropic", "model": "claude-test"}


def test_streaming_measures_time_to_first_token(openai_server: FakeOpenAI) -> None:
    client = backend(openai_server, stream="true")
    outputs = client.generate([ask("q reply hello"), ask("q @429x1 reply B", "1")])
    first, second = outputs
    assert isinstance(first, Response) and first.text == "hello" and first.output_tokens == 1
    assert first.ttft_s is not None and 0 < first.ttft_s <= first.latency_s  # type: ignore[operator]
    assert isinstance(second, Response) and second.text == "B"
    assert openai_server.bodies[0]["stream"] is True and openai_server.bodies[0]["stream_options"] == {
        "include_usage": True
    }


def test_results_report_time_to_first_token_when_streaming(
    lmms_project: pytest.Pytester, openai_server: FakeOpenAI
) -> None:
    import json

    write_jsonl(lmms_project.path / "qa.jsonl", qa_rows(4))
    lmms_project.makefile(".yaml", qa=qa_task_yaml("qa", "qa.jsonl"))
    result = lmms_project.runpytest(
        "--model=openai:served",
        f"--model-args=base_url={openai_server.url},stream=true",
        "--no-lmms-cache",
        "--lmms-output=results",
        "--lmms-run-name=streamed",
    )
    result.assert_outcomes(passed=4)
    data = json.loads((lmms_project.path / "results" / "streamed" / "results.json").read_text())
    task = data["tasks"]["qa"]["throughput"]
    assert task["ttft_p50_s"] is not None and task["ttft_p50_s"] <= task["latency_p95_s"]


def _run_with_deadline(client, requests: list[Request], deadline_s: float = 60.0) -> list:
    """``generate`` on a thread, so a dispatcher that never returns fails the test instead of hanging it."""
    import threading

    outputs: list = []
    thread = threading.Thread(target=lambda: outputs.extend(client.generate(requests)), daemon=True)
    thread.start()
    thread.join(deadline_s)
    assert not thread.is_alive(), "generate did not return"
    return outputs


def test_dispatch_fills_every_slot_without_a_thread_round_trip_per_request(
    openai_server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    hops: list[int] = []
    original = asyncio.BaseEventLoop.run_in_executor

    def counting(self, executor, func, *args):  # type: ignore[no-untyped-def]
        hops.append(len(args[0]) if args and isinstance(args[0], (list, tuple)) else 1)
        return original(self, executor, func, *args)

    monkeypatch.setattr(asyncio.BaseEventLoop, "run_in_executor", counting)
    client = backend(openai_server, max_concurrency="16")
    texts = [ask(f"q{i} reply {i}", str(i)) for i in range(200)]
    outputs = _run_with_deadline(client, texts)
    assert [o.text for o in outputs] == [str(i) for i in range(200)]
    assert hops == []  # text-only bodies are built on the loop
    assert client.peak_in_flight == 16  # an instant server, yet every slot was in use at once
    images = [ask(f"img{i} reply {i}", str(i), image=png()) for i in range(200)]
    outputs = _run_with_deadline(backend(openai_server, max_concurrency="4"), images)
    assert [o.text for o in outputs] == [str(i) for i in range(200)]
    assert sum(hops) == 200 and len(hops) <= 200 // 32 + 6  # bodies with media: chunks, not one hop each


def test_each_medium_is_read_once_and_a_repeated_one_not_at_all(openai_server: FakeOpenAI) -> None:
    data = png()
    reads: list[int] = []

    def source() -> bytes:
        reads.append(1)
        return data

    first = MediaRef("image", source)
    request = Request(
        task="t", doc_id="0", messages=(Message("user", (MediaPart(first), TextPart("reply A"))),)
    )
    client = backend(openai_server)
    (out,) = client.generate([request])
    assert isinstance(out, Response) and len(reads) == 1  # one read gave the hash and the base64
    again = MediaRef("image", source, content_hash=first.content_hash)  # another question, same image
    repeat = Request(
        task="t", doc_id="1", messages=(Message("user", (MediaPart(again), TextPart("reply B"))),)
    )
    (out,) = client.generate([repeat])
    assert isinstance(out, Response) and len(reads) == 1
    image_url = openai_server.bodies[-1]["messages"][0]["content"][0]["image_url"]["url"]
    assert image_url.startswith("data:image/png;base64,iVBOR")
