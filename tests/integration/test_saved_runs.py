"""Saved runs read back: `pytest-lmms runs`, `pytest-lmms show` and `--baseline latest`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_lmms.cli import main
from tests.helpers import qa_rows, qa_task_yaml, write_jsonl


def two_runs(project: pytest.Pytester) -> None:
    """m1 answers all six right; 'worse' gets the even documents wrong (0, 2, 4)."""
    write_jsonl(project.path / "qa.jsonl", qa_rows(6))
    project.makefile(".yaml", qa=qa_task_yaml("qa", "qa.jsonl"))
    project.runpytest("--model=scripted:m1", "--lmms-run-name=first").assert_outcomes(passed=6)
    project.runpytest("--model=scripted:worse", "--lmms-run-name=second").assert_outcomes(passed=3)


def test_runs_lists_saved_runs_with_model_and_headline_scores(
    lmms_project: pytest.Pytester, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    two_runs(lmms_project)
    monkeypatch.chdir(lmms_project.path)
    capsys.readouterr()
    assert main(["runs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["run", "created", "model", "complete"]
    rows = {line.split()[0]: line for line in lines[2:]}
    assert set(rows) == {"first", "second"}
    assert "scripted:m1" in rows["first"] and "qa 1.0000" in rows["first"]
    assert "scripted:worse" in rows["second"] and "qa 0.5000" in rows["second"]
    assert lines.index(rows["first"]) < lines.index(rows["second"])  # oldest first


def test_show_prints_the_wrong_samples_of_the_latest_run(
    lmms_project: pytest.Pytester, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    two_runs(lmms_project)
    monkeypatch.chdir(lmms_project.path)
    capsys.readouterr()
    assert main(["show", "latest", "--wrong"]) == 0
    out = capsys.readouterr().out
    headers = [line for line in out.splitlines() if line.startswith("== ")]
    assert [h.split()[1] for h in headers] == ["qa[0]", "qa[2]", "qa[4]"]
    assert "response: 'nope'" in out and "target:   'ans0'" in out
    assert out.rstrip().endswith(f"3 sample(s) from {Path('results') / 'second'}")
    assert main(["show", "results/first", "--doc", "3"]) == 0
    one = capsys.readouterr().out
    assert "== qa[3]  exact_match 1" in one and "response: 'ans3'" in one


def test_show_and_runs_name_what_is_missing(
    lmms_project: pytest.Pytester, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(lmms_project.path)
    assert main(["runs"]) == 0
    assert "no saved runs under results" in capsys.readouterr().out
    assert main(["show", "latest"]) == 2
    assert "no saved run under results" in capsys.readouterr().err
    two_runs(lmms_project)
    capsys.readouterr()
    assert main(["show", "latest", "--task", "nosuch"]) == 2
    assert "no samples of task 'nosuch'" in capsys.readouterr().err


def test_baseline_latest_compares_with_the_newest_run_of_a_model(lmms_project: pytest.Pytester) -> None:
    two_runs(lmms_project)
    # the newest run of m1 ('first'), although 'second' is newer
    result = lmms_project.runpytest(
        "--model=scripted:worse", "--lmms-run-name=third", "--baseline=latest:scripted:m1"
    )
    result.assert_outcomes(passed=3)
    data = json.loads((lmms_project.path / "results" / "third" / "results.json").read_text())
    assert Path(data["comparison"]["baseline"]).parent.name == "first"
    assert data["comparison"]["tasks"]["qa"]["diff"] == pytest.approx(-0.5)
    # plain 'latest' is the newest run before this one
    lmms_project.runpytest("--model=scripted:m1", "--lmms-run-name=fourth", "--baseline=latest")
    data = json.loads((lmms_project.path / "results" / "fourth" / "results.json").read_text())
    assert Path(data["comparison"]["baseline"]).parent.name == "third"
    missing = lmms_project.runpytest("--model=scripted:m1", "--baseline=latest:openai:*")
    assert missing.ret == pytest.ExitCode.USAGE_ERROR
    missing.stderr.fnmatch_lines(
        ["*--baseline latest:openai:*: no saved run of model 'openai:*' under results*"]
    )
