"""Mistakes in --model and --model-args: one usage error a user can act on, before any sample
runs (real pytest sessions), and model arguments recorded with their types in results.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fake_openai import FakeOpenAI
from tests.helpers import SCRIPTED_BACKEND, qa_rows, qa_task_yaml, write_jsonl


def make_task(pytester: pytest.Pytester, n: int = 2) -> None:
    write_jsonl(pytester.path / "qa.jsonl", qa_rows(n))
    pytester.makefile(".yaml", qa=qa_task_yaml("qa", "qa.jsonl"))


def usage_error(pytester: pytest.Pytester, *args: str) -> str:
    """The one error line of a session that must stop before running anything."""
    result = pytester.runpytest(*args, "--lmms-cache=cache", "--lmms-output=results")
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    errors = [line for line in result.stderr.lines if line.startswith("ERROR:")]
    assert len(errors) == 1, result.stderr.str()
    assert "Traceback" not in result.stderr.str() and "TypeError" not in result.stderr.str()
    assert not (pytester.path / "results").exists()  # nothing ran, nothing was written
    return errors[0]


def test_a_misspelt_backend_is_named_with_the_closest_one(lmms_project: pytest.Pytester) -> None:
    make_task(lmms_project)
    line = usage_error(lmms_project, "--model=opnai:x")
    assert line.startswith("ERROR: --model=opnai:x: unknown backend 'opnai'; did you mean 'openai'?")
    assert "known: anthropic, hf, openai, random" in line


def test_a_backend_name_close_to_none_lists_the_known_ones(lmms_project: pytest.Pytester) -> None:
    make_task(lmms_project)
    line = usage_error(lmms_project, "--model=random:0", "--baseline-model=zzz:x")
    assert line.startswith("ERROR: --baseline-model=zzz:x: unknown backend 'zzz'; known: ")
    assert "did you mean" not in line


@pytest.mark.parametrize(
    ("model", "valid"),
    [
        ("random:0", "answer, fallback"),
        ("openai:served", "api_key_env"),
        ("hf:tiny-qwen2-vl", "batch_size"),
    ],
)
def test_an_unknown_model_argument_is_one_usage_error_listing_the_valid_ones(
    lmms_project: pytest.Pytester, model: str, valid: str
) -> None:
    make_task(lmms_project)
    line = usage_error(lmms_project, f"--model={model}", "--model-args=foo=1")
    assert line.startswith(f"ERROR: --model={model}: ")
    assert "foo" in line and "unknown" in line and valid in line


def test_a_misspelt_argument_of_a_plain_backend_gets_a_suggestion(lmms_project: pytest.Pytester) -> None:
    make_task(lmms_project)
    line = usage_error(lmms_project, "--model=random:0", "--model-args=fallbak=x,answer=text")
    assert line == (
        "ERROR: --model=random:0: unknown argument 'fallbak' for backend 'random'; "
        "did you mean 'fallback'? valid arguments: answer, fallback"
    )


def test_the_judge_models_arguments_are_checked_too(lmms_project: pytest.Pytester) -> None:
    make_task(lmms_project)
    line = usage_error(
        lmms_project, "--model=random:0", "--judge-model=random:1", "--judge-model-args=seed=2"
    )
    assert line.startswith("ERROR: --judge-model=random:1: unknown argument 'seed' for backend 'random'")


NEEDY_BACKEND = """
from pytest_lmms import register_model


@register_model("needy")
class Needy:
    def __init__(self, model_id, *, endpoint, retries=3):
        raise AssertionError("never constructed with bad arguments")
"""


def test_a_missing_required_argument_is_named(lmms_project: pytest.Pytester) -> None:
    lmms_project.makeconftest(SCRIPTED_BACKEND + NEEDY_BACKEND)
    make_task(lmms_project)
    line = usage_error(lmms_project, "--model=needy:x", "--model-args=retries=1")
    assert (
        line
        == "ERROR: --model=needy:x: backend 'needy' needs argument(s) endpoint; valid arguments: endpoint, retries"
    )


def recorded_model_args(pytester: pytest.Pytester, *args: str) -> dict[str, object]:
    result = pytester.runpytest(*args, "--lmms-cache=cache", "--lmms-output=results")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    (path,) = Path(pytester.path / "results").glob("*/results.json")
    return json.loads(path.read_text())["config"]["model_args"]


def test_numeric_model_arguments_are_numbers_in_results_json(
    lmms_project: pytest.Pytester, openai_server: FakeOpenAI
) -> None:
    make_task(lmms_project, n=3)
    args = f"base_url={openai_server.url},max_concurrency=8,timeout=2.5,stream=false"
    recorded = recorded_model_args(lmms_project, "--model=openai:served", f"--model-args={args}")
    assert recorded == {
        "base_url": openai_server.url,
        "max_concurrency": 8,
        "timeout": 2.5,
        "stream": "false",
    }


def test_only_plain_numbers_become_numbers(lmms_project: pytest.Pytester) -> None:
    make_task(lmms_project, n=3)
    recorded = recorded_model_args(lmms_project, "--model=random:0", "--model-args=fallback=007,answer=text")
    assert recorded == {"fallback": "007", "answer": "text"}  # "007" is an id, not 7


def test_results_hide_secret_arguments_but_not_names_of_variables_or_token_counts() -> None:
    from pytest_lmms.config import RunConfig

    config = RunConfig(
        model_args={
            "api_key": "sk-live-123",
            "auth_token": "abc",
            "client_secret": "s3",
            "api_key_env": "MY_KEY",
            "max_tokens_field": "max_completion_tokens",
            "max_batch_tokens": "4096",
            "max_concurrency": "8",
        },
        judge_model_args={"password": "hunter2"},
    ).to_json()
    assert config["model_args"] == {
        "api_key": "***",
        "auth_token": "***",
        "client_secret": "***",
        "api_key_env": "MY_KEY",
        "max_tokens_field": "max_completion_tokens",
        "max_batch_tokens": 4096,
        "max_concurrency": 8,
    }
    assert config["judge_model_args"] == {"password": "***"}
    assert "sk-live-123" not in str(config) and "hunter2" not in str(config)
