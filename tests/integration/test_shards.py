"""--lmms-shard=i/n splits one evaluation over jobs; `pytest-lmms merge` makes it one run."""

from __future__ import annotations

import json

import pytest

from pytest_lmms.cache import ResponseCache
from pytest_lmms.cli import main
from tests.helpers import model_calls, qa_rows, qa_task_yaml, write_jsonl

N = 40


@pytest.fixture
def project(lmms_project: pytest.Pytester) -> pytest.Pytester:
    write_jsonl(lmms_project.path / "qa.jsonl", qa_rows(N, wrong=list(range(0, N, 4)), cluster_size=4))
    lmms_project.makefile(".yaml", qa=qa_task_yaml("qa", "qa.jsonl", "cluster_key: group\n"))
    return lmms_project


def run(pytester: pytest.Pytester, name: str, *args: str) -> pytest.RunResult:
    return pytester.runpytest("--model=scripted:m", "--lmms-output=results", f"--lmms-run-name={name}", *args)


def results(pytester: pytest.Pytester, name: str) -> dict:
    return json.loads((pytester.path / "results" / name / "results.json").read_text())


def test_three_shards_cover_every_sample_once_and_merge_to_the_whole_run(
    project: pytest.Pytester, model_log, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    run(project, "whole", "--lmms-cache=cache-whole")
    counts = []
    for index in range(3):
        result = run(project, f"shard{index}", f"--lmms-shard={index}/3", f"--lmms-cache=cache{index}")
        outcomes = result.parseoutcomes()
        counts.append(outcomes.get("passed", 0) + outcomes.get("wrong", 0))
        assert outcomes["deselected"] == N - counts[-1]
        assert results(project, f"shard{index}")["config"]["shard"] == f"{index}/3"
    assert sum(counts) == N and min(counts) > 0
    assert sorted(model_calls(model_log)) == sorted([str(i) for i in range(N)] * 2)  # whole + the shards

    out = project.path / "results" / "merged"
    args = ["merge", *(str(project.path / "results" / f"shard{i}") for i in range(3)), "--out", str(out)]
    args += ["--cache", str(project.path / "cache-all")]
    args += [arg for i in range(3) for arg in ("--cache-from", str(project.path / f"cache{i}"))]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "qa" in printed and "responses added" in printed
    merged = json.loads((out / "results.json").read_text())
    whole = results(project, "whole")
    for key in ("value", "se", "ci_low", "ci_high", "n", "n_clusters"):
        assert merged["tasks"]["qa"]["metrics"]["exact_match"][key] == pytest.approx(
            whole["tasks"]["qa"]["metrics"]["exact_match"][key]
        )
    assert len(merged["merged_from"]) == 3
    with ResponseCache(project.path / "cache-all") as cache:
        assert cache._count() == N

    # a rerun of the whole evaluation on the merged cache asks the model nothing
    model_log.write_text("")
    run(project, "again", "--lmms-cache=cache-all")
    assert model_calls(model_log) == []


def test_merge_refuses_overlapping_shards_and_other_models(
    project: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    run(project, "a", "--lmms-shard=0/2")
    run(project, "b", "--lmms-shard=0/2")
    folder = project.path / "results"
    assert main(["merge", str(folder / "a"), str(folder / "b"), "--out", str(folder / "m")]) == 1
    assert "shards must not overlap" in capsys.readouterr().err
    project.runpytest(
        "--model=scripted:other", "--lmms-output=results", "--lmms-run-name=c", "--lmms-shard=1/2"
    )
    assert main(["merge", str(folder / "a"), str(folder / "c"), "--out", str(folder / "m")]) == 1
    assert "not shards of one run" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["3/3", "x/2", "1", "-1/2"])
def test_a_bad_shard_is_a_usage_error(project: pytest.Pytester, value: str) -> None:
    result = project.runpytest("--model=scripted:m", f"--lmms-shard={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--lmms-shard*"])
