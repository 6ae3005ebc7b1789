"""Multiple choice by likelihood, end to end: the hf backend's log-probabilities against a
plain transformers forward pass, and likelihood tasks run as pytest sessions."""

from __future__ import annotations

import io
import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_lmms.types import MediaPart, MediaRef, Message, Request, TextPart
from tests.fake_logprob_server import FakeLogprobServer, expected_logprob

REPO_ROOT = Path(__file__).resolve().parents[2]
OPTIONS = ("red", "blue", "a green square", "Yes")


def png(color: tuple[int, int, int]) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (48, 48), color).save(buffer, format="PNG")
    return buffer.getvalue()


def pairs(doc_id: str, text: str, image: bytes | None) -> list[Request]:
    parts: tuple[TextPart | MediaPart, ...] = (TextPart(text),)
    if image is not None:
        parts = (MediaPart(MediaRef("image", image)), *parts)
    messages = (Message("user", parts),)
    return [
        Request(task="t", doc_id=doc_id, messages=messages, kind="loglikelihood", continuation=option)
        for option in OPTIONS
    ]


# ---- the hf backend on the tiny model ------------------------------------------------------


@pytest.fixture(scope="module")
def hf_home(lmms_home: Path) -> Iterator[None]:
    """The embedded tiny model, built in the session's private PYTEST_LMMS_HOME."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        yield


def reference(backend: object, request: Request) -> float:
    """log P(continuation | context) from one plain forward pass over the concatenated ids."""
    import torch

    inputs = backend.model_inputs(request)  # type: ignore[attr-defined]
    processor = backend._processor  # type: ignore[attr-defined]
    tokenizer = backend._tokenizer  # type: ignore[attr-defined]
    conversation = [
        {
            "role": "user",
            "content": [
                {"type": "image"} if isinstance(p, MediaPart) else {"type": "text", "text": p.text}
                for p in request.messages[0].content
            ],
        }
    ]
    context = processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    head = tokenizer(context, add_special_tokens=False)["input_ids"]
    whole = tokenizer(context + request.continuation, add_special_tokens=False)["input_ids"]
    tokens = whole[len(head) :]
    length = inputs["input_ids"].shape[1]
    extra = torch.tensor([tokens])
    full = dict(inputs)
    full["input_ids"] = torch.cat([inputs["input_ids"], extra], 1)
    full["attention_mask"] = torch.ones_like(full["input_ids"])
    if "mm_token_type_ids" in inputs:
        full["mm_token_type_ids"] = torch.cat([inputs["mm_token_type_ids"], torch.zeros_like(extra)], 1)
    with torch.inference_mode():
        logits = backend._model(**full).logits[0]  # type: ignore[attr-defined]
    logprobs = torch.log_softmax(logits.float(), -1)
    return sum(float(logprobs[length - 1 + j, token]) for j, token in enumerate(tokens))


@pytest.mark.parametrize("with_image", [True, False], ids=["image", "text"])
def test_hf_logprobs_equal_a_plain_forward_pass_on_the_concatenated_sequence(
    hf_home: None, with_image: bool
) -> None:
    from pytest_lmms.models.hf import HFBackend

    backend = HFBackend("tiny-qwen2-vl")
    requests = pairs("0", "What colour is the picture?", png((200, 30, 30)) if with_image else None)
    responses = backend.generate(requests)
    for request, response in zip(requests, responses, strict=True):
        assert not isinstance(response, BaseException), response
        assert response.text == ""
        assert response.logprob == pytest.approx(reference(backend, request), abs=1e-4)
        assert isinstance(response.is_greedy, bool)
    backend.close()


def test_hf_batching_and_context_sharing_change_no_value(hf_home: None) -> None:
    from pytest_lmms.models.hf import HFBackend

    requests = [
        *pairs("0", "What colour is it?", png((10, 200, 10))),
        *pairs("1", "Name a colour.", None),
        *pairs("2", "Which shape?", png((10, 10, 200))),
    ]
    values = {}
    for label, args in {
        "shared, batch 8": {"batch_size": "8"},
        "shared, batch 1": {"batch_size": "1"},
        "independent": {"share_context": "false"},
    }.items():
        backend = HFBackend("tiny-qwen2-vl", **args)
        shuffled = requests[::-1]  # another order, other batch neighbours
        answers = dict(zip(shuffled, backend.generate(shuffled), strict=True))
        values[label] = [answers[r].logprob for r in requests]  # type: ignore[union-attr]
        backend.close()
    first = values["shared, batch 8"]
    for label, got in values.items():
        assert got == pytest.approx(first, abs=1e-4), label


# ---- likelihood tasks as pytest sessions -------------------------------------------------

DOCS = [
    {"id": "q1", "question": "Which animal barks?", "options": ["cat", "dog", "cow"], "answer": 1},
    {"id": "q2", "question": "Which is a fruit?", "options": ["apple", "brick", "sock"], "answer": "apple"},
    {"id": "q3", "question": "Which is a colour?", "options": ["seven", "green", "table"], "answer": "B"},
    {"id": "q4", "question": "Which one flies?", "options": ["stone", "fish", "bird"], "answer": "C"},
]
CHOICE_YAML = """task: toy_choice
dataset_path: docs.jsonl
output_type: multiple_choice
doc_to_text: "{{question}}"
doc_to_choice: options
doc_to_target: answer
metric_list:
  - metric: acc
  - metric: acc_norm
"""


def write_task(folder: Path, docs: list[dict[str, Any]] = DOCS) -> None:
    (folder / "toy.yaml").write_text(CHOICE_YAML)
    (folder / "docs.jsonl").write_text("".join(json.dumps(doc) + "\n" for doc in docs))


def results_of(folder: Path, run: str) -> dict[str, Any]:
    return json.loads((folder / "results" / run / "results.json").read_text())  # type: ignore[no-any-return]


def samples_of(folder: Path, run: str, task: str) -> dict[str, dict[str, Any]]:
    lines = (folder / "results" / run / f"samples_{task}.jsonl").read_text().splitlines()
    return {record["doc_id"]: record for record in map(json.loads, lines)}


@pytest.fixture
def logprob_server() -> Iterator[FakeLogprobServer]:
    server = FakeLogprobServer()
    yield server
    server.close()


def stand_in_ranking(doc: dict[str, Any]) -> list[float]:
    messages = [{"role": "user", "content": doc["question"]}]
    return [expected_logprob(messages, option) for option in doc["options"]]


def test_a_multiple_choice_task_ranks_options_by_the_servers_log_probabilities(
    pytester: pytest.Pytester, logprob_server: FakeLogprobServer
) -> None:
    write_task(pytester.path)
    result = pytester.runpytest(
        "toy.yaml",
        "--model=openai:m",
        f"--model-args=base_url={logprob_server.base_url}",
        "--lmms-run-name=r",
        "-p",
        "no:cacheprovider",
    )
    assert result.ret == 0, result.stdout.str()
    samples = samples_of(pytester.path, "r", "toy_choice")
    right = []
    for doc in DOCS:
        record = samples[doc["id"]]
        expected = stand_in_ranking(doc)
        assert [o["logprob"] for o in record["options"]] == pytest.approx(expected)
        assert [o["choice"] for o in record["options"]] == doc["options"]
        chosen = max(range(len(expected)), key=lambda i: expected[i])
        assert record["response"] == doc["options"][chosen]
        target = {"q1": 1, "q2": 0, "q3": 1, "q4": 2}[doc["id"]]
        right.append(float(chosen == target))
        assert record["scores"]["acc"] == right[-1]
    metrics = results_of(pytester.path, "r")["tasks"]["toy_choice"]["metrics"]
    assert metrics["acc"]["value"] == pytest.approx(sum(right) / len(right))
    assert metrics["acc"]["ci_low"] <= metrics["acc"]["value"] <= metrics["acc"]["ci_high"]
    # the context once per option, plus the one probe request
    assert logprob_server.requests == 1 + sum(len(doc["options"]) for doc in DOCS)
    table = [line for line in result.outlines if line.startswith("toy_choice")]
    assert [line.split()[1] for line in table] == ["acc", "acc_norm"]


def test_a_server_without_prompt_logprobs_fails_the_task_once_saying_what_it_lacks(
    pytester: pytest.Pytester,
) -> None:
    server = FakeLogprobServer(supports=False)
    try:
        write_task(pytester.path)
        result = pytester.runpytest(
            "toy.yaml",
            "--model=openai:m",
            f"--model-args=base_url={server.base_url}",
            "-p",
            "no:cacheprovider",
        )
        requests = server.requests
    finally:
        server.close()
    assert result.ret == 1
    out = result.stdout.str()
    assert out.count("gives no prompt log-probabilities") == 1, out
    assert "4 failed" in out
    assert requests == 1  # the probe alone: no request per sample, no retries


def test_a_backend_without_log_probabilities_is_refused_at_collection(pytester: pytest.Pytester) -> None:
    write_task(pytester.path)
    result = pytester.runpytest("toy.yaml", "--model=anthropic:claude-x", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "toy_choice" in err and "anthropic backend gives no log-probabilities" in err


def test_each_context_and_option_pair_is_one_cache_entry(
    pytester: pytest.Pytester, logprob_server: FakeLogprobServer
) -> None:
    write_task(pytester.path)
    args = [
        "toy.yaml",
        "--model=openai:m",
        f"--model-args=base_url={logprob_server.base_url}",
        "-p",
        "no:cacheprovider",
    ]
    assert pytester.runpytest(*args, "--lmms-run-name=a").ret == 0
    first = logprob_server.requests
    docs = [dict(doc) for doc in DOCS]
    docs[0]["options"] = [*DOCS[0]["options"], "wolf"]  # a new option on one document
    write_task(pytester.path, docs)
    assert pytester.runpytest(*args, "--lmms-run-name=b").ret == 0
    # the new pair alone, and the probe of the new session
    assert logprob_server.requests - first == 2
    record = samples_of(pytester.path, "b", "toy_choice")["q1"]
    assert [o["choice"] for o in record["options"]] == ["cat", "dog", "cow", "wolf"]
    assert record["options"][3]["logprob"] == pytest.approx(stand_in_ranking(docs[0])[3])


def summary_table(lines: list[str]) -> list[str]:
    start = next(i for i, line in enumerate(lines) if "pytest-lmms results" in line)
    return [line for line in lines[start + 1 :] if line.startswith(("ppl_shapes_", "task", "---"))]


def test_xdist_gives_the_same_table_and_the_perplexity_is_the_corpus_value(pytester: pytest.Pytester) -> None:
    shutil.copytree(REPO_ROOT / "benchmarks" / "offline", pytester.path / "offline")
    tables = []
    for workers in ("0", "2"):
        result = pytester.runpytest(
            "offline/shapes_ppl.yaml",
            "--model=random:0",
            f"--lmms-run-name=n{workers}",
            "-p",
            "xdist",
            "-n",
            workers,
            "-p",
            "no:cacheprovider",
        )
        assert result.ret == 0, result.stdout.str()
        tables.append(summary_table(result.outlines))
    assert tables[0] == tables[1]
    assert any(line.split()[1] == "word_perplexity" for line in tables[0])
    samples = samples_of(pytester.path, "n2", "ppl_shapes_caption").values()
    logprob = sum(record["options"][0]["logprob"] for record in samples)
    words = sum(len(record["options"][0]["choice"].split()) for record in samples)
    metric = results_of(pytester.path, "n2")["tasks"]["ppl_shapes_caption"]["metrics"]["word_perplexity"]
    assert metric["value"] == pytest.approx(math.exp(-logprob / words))
    assert metric["method"] == "bootstrap" and metric["higher_is_better"] is False


def test_the_offline_likelihood_suite_runs_on_the_tiny_model(
    pytester: pytest.Pytester, hf_home: None
) -> None:
    from pytest_lmms.models.hf import HFBackend
    from pytest_lmms.tasks import load_task
    from pytest_lmms.tasks._likelihood import likelihood_requests

    shutil.copytree(REPO_ROOT / "benchmarks" / "offline", pytester.path / "offline")
    result = pytester.runpytest(
        "offline/shapes_ppl.yaml",
        "--model=hf:tiny-qwen2-vl",
        "--limit=3",
        "--lmms-run-name=t",
        "-p",
        "no:cacheprovider",
    )
    assert result.ret == 0, result.stdout.str()
    metrics = results_of(pytester.path, "t")["tasks"]
    assert set(metrics["ppl_shapes_color"]["metrics"]) == {"acc", "acc_norm"}
    assert set(metrics["ppl_shapes_caption"]["metrics"]) == {
        "word_perplexity",
        "byte_perplexity",
        "bits_per_byte",
    }
    # the recorded log-probabilities are the backend's own for the task's pairs
    task = load_task(f"{pytester.path}/offline/shapes_ppl.yaml::ppl_shapes_color")
    record = samples_of(pytester.path, "t", "ppl_shapes_color")["img000-color"]
    backend = HFBackend("tiny-qwen2-vl")
    direct = backend.generate(likelihood_requests(task, task.doc("img000-color")))
    backend.close()
    assert [o["choice"] for o in record["options"]] == ["blue", "green", "red", "yellow"]
    assert [o["logprob"] for o in record["options"]] == pytest.approx([r.logprob for r in direct], abs=1e-5)  # type: ignore[union-attr]
