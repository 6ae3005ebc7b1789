"""The judge API outside a run: prompts, requests, failures, the cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_lmms.models import register_model
from pytest_lmms.scoring.judge import Judge, JudgeError, JudgePrompt, judge_prompts
from pytest_lmms.types import Request, Response

PROMPT = JudgePrompt(
    "unit_test_prompt", "Q: {question}\nA: {answer}\nScore it.", system="Be strict.", max_new_tokens=8
)


def test_the_prompt_renders_into_a_greedy_request() -> None:
    request = PROMPT.request(question="2+2?", answer="4")
    assert [m.role for m in request.messages] == ["system", "user"]
    assert request.messages[0].text == "Be strict."
    assert request.messages[1].text == "Q: 2+2?\nA: 4\nScore it."
    assert request.gen.temperature == 0.0 and request.gen.max_new_tokens == 8
    assert PROMPT.fields == ["answer", "question"]


def test_a_missing_field_is_named() -> None:
    with pytest.raises(JudgeError, match="missing field.*answer"):
        PROMPT.render(question="x")


def test_prompts_are_registered_by_name_and_a_redefinition_replaces() -> None:
    assert judge_prompts()["unit_test_prompt"] is PROMPT
    edited = JudgePrompt("unit_test_prompt_edited", "first text")
    again = JudgePrompt("unit_test_prompt_edited", "second text")  # the module edited and imported again
    assert judge_prompts()["unit_test_prompt_edited"] is again and again != edited


def test_ask_returns_the_text_and_counts_calls() -> None:
    seen: list[Request] = []

    def complete(request: Request) -> Response:
        seen.append(request)
        return Response(text="9")

    judge = Judge(complete, "fake:judge")
    sample = judge.for_sample()
    assert sample.ask(PROMPT, question="q", answer="a") == "9"
    assert sample.calls == 1 and sample.prompts_used == ["unit_test_prompt"]
    assert judge.calls == 1
    assert seen[0].messages[1].text == "Q: q\nA: a\nScore it."
    assert judge.describe()["prompts"]["unit_test_prompt"]["template"] == PROMPT.template


def test_a_failed_call_is_an_error_never_a_score() -> None:
    def complete(request: Request) -> Response:
        raise TimeoutError("no answer in 30 s")

    with pytest.raises(
        JudgeError, match="judge fake:judge failed on prompt 'unit_test_prompt': TimeoutError"
    ):
        Judge(complete, "fake:judge").ask(PROMPT, question="q", answer="a")


@register_model("unit-judge")
class CountingJudgeBackend:
    calls = 0

    def __init__(self, model_id: str = "") -> None:
        self.model_id = model_id
        self.max_batch_size = 1

    def identity(self) -> dict[str, str]:
        return {"backend": "unit-judge", "model": self.model_id}

    def generate(self, requests: list[Request]) -> list[Response]:
        CountingJudgeBackend.calls += len(requests)
        return [Response(text=f"len={len(r.prompt_text)}") for r in requests]

    def close(self) -> None:
        pass


def test_from_model_goes_through_the_response_cache(tmp_path: Path) -> None:
    CountingJudgeBackend.calls = 0
    judge = Judge.from_model("unit-judge:j1", cache_dir=tmp_path / "cache")
    first = judge.ask(PROMPT, question="q", answer="a")
    judge.close()
    again = Judge.from_model("unit-judge:j1", cache_dir=tmp_path / "cache")
    assert again.ask(PROMPT, question="q", answer="a") == first
    again.close()
    assert CountingJudgeBackend.calls == 1
