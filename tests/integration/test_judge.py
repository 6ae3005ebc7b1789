"""The LLM judge in real pytest sessions: --judge-model, the cache, results.json."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from tests.helpers import model_calls, write_jsonl

UTILS = """
from pytest_lmms.scoring.judge import JudgePrompt

GRADE = JudgePrompt(
    "test_grade",
    "Answer: {response}\\nTarget: {target}\\nreply {verdict}",
    system="You grade answers.",
    max_new_tokens=4,
)


def process_results(doc, response, judge=None):
    if response == doc["answer"]:
        return {"acc": 1.0}
    if judge is None:
        return {"acc": 0.0}
    verdict = judge.ask(GRADE, response=response, target=doc["answer"], verdict=doc["verdict"])
    return {"acc": float(verdict == "right")}
"""

YAML = textwrap.dedent(
    """\
    task: graded
    dataset_path: graded.jsonl
    doc_to_text: "Question {{ question }}: reply {{ reply }}"
    doc_to_target: answer
    process_results: !function utils.process_results
    metric_list:
      - metric: acc
    """
)


@pytest.fixture
def graded(lmms_project: pytest.Pytester) -> pytest.Pytester:
    rows = []
    for i in range(6):
        # 0-1: right by the rule; 2-3: rescued by the judge; 4-5: wrong for the judge too
        reply = f"ans{i}" if i < 2 else f"other{i}"
        verdict = "right" if i in (2, 3) else "wrong"
        rows.append(
            {"id": str(i), "question": f"q{i}", "answer": f"ans{i}", "reply": reply, "verdict": verdict}
        )
    write_jsonl(lmms_project.path / "graded.jsonl", rows)
    (lmms_project.path / "utils.py").write_text(UTILS)
    lmms_project.makefile(".yaml", graded=YAML)
    return lmms_project


def run(pytester: pytest.Pytester, name: str, *args: str) -> pytest.RunResult:
    return pytester.runpytest(
        "--model=scripted:m", "--lmms-output=results", f"--lmms-run-name={name}", "--lmms-cache=cache", *args
    )


def results(pytester: pytest.Pytester, name: str) -> dict:
    return json.loads((pytester.path / "results" / name / "results.json").read_text())


def test_the_judge_rescues_answers_the_rules_miss(graded: pytest.Pytester, model_log) -> None:  # type: ignore[no-untyped-def]
    result = run(graded, "judged", "--judge-model=scripted:judge")
    assert result.parseoutcomes() == {"passed": 4, "wrong": 2}
    data = results(graded, "judged")
    assert data["tasks"]["graded"]["metrics"]["acc"]["value"] == pytest.approx(4 / 6)
    assert data["tasks"]["graded"]["judge"] == {"samples": 4, "calls": 4}
    assert data["judge"]["model"] == "scripted:judge"
    assert data["judge"]["identity"] == {"backend": "scripted", "model": "judge"}
    assert data["judge"]["prompts"] == {
        "test_grade": {
            "template": "Answer: {response}\nTarget: {target}\nreply {verdict}",
            "system": "You grade answers.",
            "max_new_tokens": 4,
        }
    }
    assert data["config"]["judge_model"] == "scripted:judge"
    result.stdout.fnmatch_lines(["*judge scripted:judge: graded: 4 of 6 samples needed the judge (4 calls)*"])
    lines = Path(data["tasks"]["graded"]["samples_file"]).read_text().splitlines()
    samples = [json.loads(line) for line in lines]
    judged = {s["doc_id"]: s["judge_calls"] for s in samples if "judge_calls" in s}
    assert judged == {"2": 1, "3": 1, "4": 1, "5": 1}
    # each sample's line holds its judge calls: the prompt asked and the judge's reply
    logs = {s["doc_id"]: s["judge_log"] for s in samples if "judge_log" in s}
    assert sorted(logs) == ["2", "3", "4", "5"]
    assert all(
        len(log) == 1 and log[0]["prompt"] == "test_grade" and log[0]["reply"] for log in logs.values()
    )
    # six model calls and four judge calls (the judge's requests have no doc id)
    assert len(model_log.read_text().splitlines()) == 10


def test_judge_answers_come_from_the_cache_on_a_rerun(graded: pytest.Pytester, model_log) -> None:  # type: ignore[no-untyped-def]
    run(graded, "first", "--judge-model=scripted:judge")
    model_log.write_text("")
    result = run(graded, "second", "--judge-model=scripted:judge")
    assert result.parseoutcomes() == {"passed": 4, "wrong": 2}
    assert model_calls(model_log) == []
    assert results(graded, "second")["tasks"]["graded"]["judge"] == {"samples": 4, "calls": 4}


def test_without_a_judge_the_rules_decide(graded: pytest.Pytester) -> None:
    result = run(graded, "plain")
    assert result.parseoutcomes() == {"passed": 2, "wrong": 4}
    data = results(graded, "plain")
    assert data["judge"] is None
    assert data["tasks"]["graded"]["judge"] is None


def test_a_failing_judge_fails_the_sample_with_its_reason(graded: pytest.Pytester) -> None:
    result = run(graded, "down", "--judge-model=scripted:down")
    assert result.parseoutcomes() == {"passed": 2, "failed": 4}
    # four samples failing for one reason are printed once, with the reason and their ids
    result.stdout.fnmatch_lines(
        [
            "4 samples failed: scoring failed: JudgeError: judge scripted:down failed on prompt 'test_grade'*",
            "*graded.yaml::graded[[]2[]]*",
        ]
    )


def test_the_model_can_judge_itself_with_one_engine(graded: pytest.Pytester, model_log) -> None:  # type: ignore[no-untyped-def]
    result = run(graded, "self", "--judge-model=scripted:m")
    assert result.parseoutcomes() == {"passed": 4, "wrong": 2}
    assert results(graded, "self")["judge"]["identity"] == {"backend": "scripted", "model": "m"}


def test_an_unknown_judge_backend_is_a_usage_error(graded: pytest.Pytester) -> None:
    result = run(graded, "nojudge", "--judge-model=nosuchbackend:x")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--judge-model=nosuchbackend:x: *nosuchbackend*"])
