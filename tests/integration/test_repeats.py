"""--lmms-repeats: K sampled answers per question, stability in the summary, resumable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_lmms.cli import main as cli_main
from tests.helpers import model_calls, qa_task_yaml, write_jsonl


def write_task(pytester: pytest.Pytester) -> None:
    # q0 always right, q1 right once in three, q2 never right, q3 right twice in three
    rows = [
        {"id": "0", "question": "q0", "answer": "a", "reply": "a|a|a"},
        {"id": "1", "question": "q1", "answer": "a", "reply": "a|b|c"},
        {"id": "2", "question": "q2", "answer": "a", "reply": "b|b|b"},
        {"id": "3", "question": "q3", "answer": "a", "reply": "a|c|a"},
    ]
    write_jsonl(pytester.path / "qa.jsonl", rows)
    pytester.makefile(".yaml", qa=qa_task_yaml("qa", "qa.jsonl"))


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest(
        "--model=scripted:m", "--lmms-repeats=3", "--lmms-output=results", "--lmms-cache=cache", *args
    )


def latest_results(pytester: pytest.Pytester) -> dict:
    return json.loads(sorted(pytester.path.glob("results/*/results.json"))[-1].read_text())


def test_each_repeat_is_an_item_and_stability_is_reported(
    lmms_project: pytest.Pytester, model_log: Path
) -> None:
    write_task(lmms_project)
    collected = run(lmms_project, "--collect-only", "-q")
    collected.stdout.fnmatch_lines(
        ["qa.yaml::qa[[]0#r0[]]", "qa.yaml::qa[[]0#r1[]]", "qa.yaml::qa[[]0#r2[]]", "12 tests*"]
    )
    result = run(lmms_project)
    assert result.parseoutcomes() == {"passed": 6, "wrong": 6}
    result.stdout.fnmatch_lines(
        ["*qa (exact_match, k=3, 4 questions): EA 0.5000  CA 0.5833  IV 0.1111  CR 0.5000*"]
    )
    info = latest_results(lmms_project)["tasks"]["qa"]
    # EA = (1 + 1/3 + 0 + 2/3) / 4
    stability = info["stability"]
    assert stability["expected_accuracy"] == pytest.approx(0.5)
    # q0 -> 1; q1: three-way tie of a (right), b, c -> mean 1/3; q2 -> 0; q3: a wins -> 1
    assert stability["consensus_accuracy"] == pytest.approx((1 + 1 / 3 + 0 + 1) / 4)
    assert stability["internal_variance"] == pytest.approx((0 + 2 / 9 + 0 + 2 / 9) / 4)
    assert stability["consistency_rate"] == 0.5
    assert [q["doc_id"] for q in stability["highest_internal_variance"][:2]] == ["1", "3"]
    metric = info["metrics"]["exact_match"]
    assert metric["n"] == 12 and metric["n_clusters"] == 4 and metric["method"] == "agresti-coull-cluster"
    assert len(model_calls(model_log)) == 12


def test_repeats_are_sampled_with_a_seed_per_repeat_and_resume_from_the_cache(
    lmms_project: pytest.Pytester, model_log: Path
) -> None:
    write_task(lmms_project)
    run(lmms_project)
    run(lmms_project)
    assert len(model_calls(model_log)) == 12
    data = latest_results(lmms_project)
    assert data["throughput"]["cached"] == 12
    assert data["config"]["repeats"] == 3
    import sqlite3

    with sqlite3.connect(lmms_project.path / "cache" / "responses.sqlite") as db:
        records = [json.loads(value) for (value,) in db.execute("SELECT value FROM responses")]
    assert len(records) == 12 and all(record["sampled"] for record in records)


def test_an_explicit_temperature_of_zero_makes_repeats_greedy(
    lmms_project: pytest.Pytester, model_log: Path
) -> None:
    write_task(lmms_project)
    assert run(lmms_project, "--lmms-temperature=0").ret == 0
    assert latest_results(lmms_project)["config"]["temperature"] == 0.0


def test_power_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["power", "--effect", "0.02", "--p", "0.7", "--paired-correlation", "0.5"]) == 0
    assert "minimum n: 4123 questions" in capsys.readouterr().out
    assert cli_main(["power", "--effect", "0.02", "--p", "0.7", "--cluster-size", "10", "--icc", "0.2"]) == 0
    assert "design effect 2.800" in capsys.readouterr().out
    assert cli_main(["power", "--effect", "0.02"]) == 2
    assert "exactly one of sd" in capsys.readouterr().err
