"""--lmms-rescore: a changed metric is scored again from the cache, with no model at all."""

from __future__ import annotations

import json

import pytest

from tests.helpers import model_calls, qa_rows, qa_task_yaml, write_jsonl


def run(pytester: pytest.Pytester, name: str, *args: str) -> pytest.RunResult:
    return pytester.runpytest(
        "--model=scripted:m", "--lmms-output=results", f"--lmms-run-name={name}", "--lmms-cache=cache", *args
    )


def test_rescoring_a_changed_metric_asks_no_model(lmms_project: pytest.Pytester, model_log) -> None:  # type: ignore[no-untyped-def]
    write_jsonl(lmms_project.path / "qa.jsonl", qa_rows(6, wrong=[1]))
    lmms_project.makefile(".yaml", qa=qa_task_yaml("qa", "qa.jsonl"))
    assert run(lmms_project, "first").parseoutcomes() == {"passed": 5, "wrong": 1}
    assert len(model_calls(model_log)) == 6
    model_log.write_text("")
    # the metric changes: "contains" instead of exact match, and a seventh question appears
    write_jsonl(lmms_project.path / "qa.jsonl", qa_rows(7, wrong=[1]))
    lmms_project.makefile(".yaml", qa=qa_task_yaml("qa", "qa.jsonl").replace("exact_match", "contains"))
    result = run(lmms_project, "rescored", "--lmms-rescore")
    assert result.parseoutcomes() == {"passed": 5, "wrong": 1, "failed": 1}
    result.stdout.fnmatch_lines(
        ["*qa[[]6[]]: model call failed: BackendError: not in the response cache*--lmms-rescore*"]
    )
    assert model_calls(model_log) == []
    data = json.loads((lmms_project.path / "results" / "rescored" / "results.json").read_text())
    assert data["config"]["rescore"] is True
    assert data["tasks"]["qa"]["metrics"]["contains"]["n"] == 6


def test_rescore_without_a_cache_is_a_usage_error(lmms_project: pytest.Pytester) -> None:
    write_jsonl(lmms_project.path / "qa.jsonl", qa_rows(2))
    lmms_project.makefile(".yaml", qa=qa_task_yaml("qa", "qa.jsonl"))
    result = lmms_project.runpytest("--model=scripted:m", "--lmms-rescore", "--no-lmms-cache")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--lmms-rescore scores from the response cache*--no-lmms-cache*"])
