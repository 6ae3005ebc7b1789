"""Paired comparison with a baseline run, and the CI gates, in real pytest sessions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as scipy_stats
from statsmodels.stats.multitest import multipletests

from pytest_lmms.report import FailUnder, check_regressions, regression_p_value
from pytest_lmms.stats import compare
from tests.helpers import model_calls, qa_rows, qa_task_yaml, write_jsonl


def write_task(pytester: pytest.Pytester, name: str, n: int, wrong: list[int]) -> None:
    write_jsonl(pytester.path / f"{name}.jsonl", qa_rows(n, wrong=wrong))
    pytester.makefile(".yaml", **{name: qa_task_yaml(name, f"{name}.jsonl")})


def run(pytester: pytest.Pytester, name: str, *args: str) -> pytest.RunResult:
    return pytester.runpytest(
        "--model=scripted:m", "--lmms-output=results", f"--lmms-run-name={name}", "--lmms-cache=cache", *args
    )


def results(pytester: pytest.Pytester, name: str) -> dict:
    return json.loads((pytester.path / "results" / name / "results.json").read_text())


def test_significant_regression_fails_the_run_but_no_sample(lmms_project: pytest.Pytester) -> None:
    write_task(lmms_project, "qa", 60, wrong=[])
    assert run(lmms_project, "base").ret == 0
    write_task(lmms_project, "qa", 60, wrong=list(range(0, 60, 3)))  # 20 of 60 now wrong
    result = run(lmms_project, "new", "--baseline=results/base", "--lmms-fail-on-regression")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert result.parseoutcomes() == {"passed": 40, "wrong": 20}
    result.stdout.fnmatch_lines(
        [
            "*paired comparison with baseline scripted:m*",
            "qa*exact_match*0.6667*1.0000*-0.3333*40/0/20/0*",
            "*gate failed (regression): qa:exact_match is worse than the baseline by 0.3333*",
        ]
    )
    comparison = results(lmms_project, "new")["comparison"]["tasks"]["qa"]
    assert comparison["agreement"] == {
        "both_right": 40,
        "only_current": 0,
        "only_baseline": 20,
        "both_wrong": 0,
    }


def test_regression_within_the_margin_passes(lmms_project: pytest.Pytester) -> None:
    write_task(lmms_project, "qa", 60, wrong=[])
    run(lmms_project, "base")
    write_task(lmms_project, "qa", 60, wrong=[5, 17])
    result = run(lmms_project, "new", "--baseline=results/base", "--lmms-fail-on-regression=0.1")
    assert result.ret == 0
    assert results(lmms_project, "new")["gates"]["failures"] == []


def test_fail_under_from_the_ini_file(lmms_project: pytest.Pytester) -> None:
    write_task(lmms_project, "qa", 10, wrong=[0, 1, 2, 3])
    lmms_project.makeini("[pytest]\nlmms_fail_under =\n    qa:exact_match=0.7\n")
    result = run(lmms_project, "a")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*gate failed (fail-under): qa:exact_match = 0.6000 < 0.7*"])
    assert run(lmms_project, "b", "--lmms-fail-under=qa:exact_match=0.5").ret == 0


def test_fail_under_naming_an_unknown_metric_fails_loudly(lmms_project: pytest.Pytester) -> None:
    write_task(lmms_project, "qa", 3, wrong=[])
    result = run(lmms_project, "a", "--lmms-fail-under=qa:accuracy=0.5")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*qa:accuracy: no such task and metric in this run*"])


def test_bad_gate_options_are_usage_errors(lmms_project: pytest.Pytester) -> None:
    write_task(lmms_project, "qa", 2, wrong=[])
    assert run(lmms_project, "a", "--lmms-fail-under=qa>0.5").ret == pytest.ExitCode.USAGE_ERROR
    assert run(lmms_project, "b", "--lmms-fail-on-regression").ret == pytest.ExitCode.USAGE_ERROR
    assert run(lmms_project, "c", "--baseline=nowhere/results.json").ret == pytest.ExitCode.USAGE_ERROR


def test_holm_adjustment_across_tasks_matches_statsmodels(lmms_project: pytest.Pytester) -> None:
    write_task(lmms_project, "one", 40, wrong=[])
    write_task(lmms_project, "two", 40, wrong=[1, 2])
    run(lmms_project, "base")
    write_task(lmms_project, "one", 40, wrong=list(range(0, 40, 4)))
    write_task(lmms_project, "two", 40, wrong=[1, 2, 3, 4, 5, 6])
    run(lmms_project, "new", "--baseline=results/base")
    tasks = results(lmms_project, "new")["comparison"]["tasks"]
    raw = [tasks["one"]["p_value"], tasks["two"]["p_value"]]
    expected = multipletests(raw, method="holm")[1]
    assert [tasks["one"]["p_holm"], tasks["two"]["p_holm"]] == pytest.approx(list(expected), abs=1e-12)


def test_baseline_comparison_restricted_to_shared_documents(lmms_project: pytest.Pytester) -> None:
    write_task(lmms_project, "qa", 10, wrong=[])
    run(lmms_project, "base", "--limit=6")
    result = run(lmms_project, "new", "--baseline=results/base")
    result.stdout.fnmatch_lines(
        ["*qa: compared on the 6 shared documents; 4 only in this run, 0 only in the baseline*"]
    )


def test_regression_p_value_is_the_shifted_paired_t_test() -> None:
    rng = np.random.default_rng(3)
    current = rng.binomial(1, 0.6, 200).astype(float)
    baseline = rng.binomial(1, 0.7, 200).astype(float)
    ids = [str(i) for i in range(200)]
    comparison = compare(
        dict(zip(ids, current, strict=True)), dict(zip(ids, baseline, strict=True))
    ).to_json()
    for margin in (0.0, 0.02, 0.05):
        expected = scipy_stats.ttest_1samp(current - baseline, -margin).pvalue
        assert regression_p_value(comparison, margin, higher_is_better=True) == pytest.approx(
            expected, rel=1e-9
        )


def test_improvements_never_fail_the_regression_gate() -> None:
    comparison = {
        "metric": "acc",
        "diff": 0.3,
        "se": 0.01,
        "ci_low": 0.28,
        "ci_high": 0.32,
        "n": 100,
        "n_clusters": None,
    }
    assert check_regressions({"t": comparison}, {"t": True}, margin=0.0) == []
    # the same difference on a lower-is-better metric (WER went up) is a regression
    assert len(check_regressions({"t": comparison}, {"t": False}, margin=0.0)) == 1


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        ("mme:acc=0.8", ("mme", "acc", 0.8)),
        ("shapes_*:choice_accuracy=0.25", ("shapes_*", "choice_accuracy", 0.25)),
    ],
)
def test_fail_under_spec_parsing(spec: str, parsed: tuple[str, str, float]) -> None:
    gate = FailUnder.parse(spec)
    assert (gate.task, gate.metric, gate.threshold) == parsed
    with pytest.raises(ValueError, match="TASK:METRIC=VALUE"):
        FailUnder.parse("mme>0.8")


def test_a_baseline_whose_samples_are_gone_is_reported(lmms_project: pytest.Pytester, tmp_path: Path) -> None:
    write_task(lmms_project, "qa", 3, wrong=[])
    run(lmms_project, "base")
    for samples in (lmms_project.path / "results" / "base").glob("samples_*.jsonl"):
        samples.unlink()
    result = run(lmms_project, "new", "--baseline=results/base", "--lmms-fail-on-regression")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*baseline not compared:*samples file of task 'qa' not found*"])


def test_compare_command_on_two_saved_runs(
    lmms_project: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    from pytest_lmms.cli import main

    write_task(lmms_project, "qa", 30, wrong=[])
    run(lmms_project, "base")
    write_task(lmms_project, "qa", 30, wrong=[0, 1, 2, 3, 4, 5])
    run(lmms_project, "new")
    capsys.readouterr()
    assert (
        main(["compare", str(lmms_project.path / "results/new"), str(lmms_project.path / "results/base")])
        == 0
    )
    out = capsys.readouterr().out
    assert "qa" in out and "-0.2000" in out and "24/0/6/0" in out
    assert main(["compare", str(lmms_project.path / "results/new"), str(lmms_project.path / "nowhere")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_baseline_model_in_the_same_session(lmms_project: pytest.Pytester, model_log: Path) -> None:
    write_task(lmms_project, "qa", 40, wrong=[])
    args = ("--baseline-model=scripted:m", "--lmms-fail-on-regression")
    result = lmms_project.runpytest(
        "--model=scripted:worse", "--lmms-output=results", "--lmms-run-name=pair", "--lmms-cache=cache", *args
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert result.parseoutcomes() == {"passed": 20, "wrong": 20}
    result.stdout.fnmatch_lines(
        [
            "*paired comparison with baseline scripted:m*",
            "qa*exact_match*0.5000*1.0000*-0.5000*20/0/20/0*",
            "*gate failed (regression): qa:exact_match*",
        ]
    )
    comparison = results(lmms_project, "pair")["comparison"]
    assert comparison["baseline_metrics"]["qa"]["exact_match"]["value"] == 1.0
    assert len(Path(comparison["baseline_samples"]["qa"]).read_text().splitlines()) == 40
    assert len(model_calls(model_log)) == 80  # each sample asked of both models, once
    lmms_project.runpytest("--model=scripted:worse", "--lmms-output=results", "--lmms-cache=cache", *args)
    assert len(model_calls(model_log)) == 80  # both models' answers come from the cache


def test_a_failed_baseline_call_fails_the_sample(lmms_project: pytest.Pytester) -> None:
    write_task(lmms_project, "qa", 2, wrong=[])
    result = lmms_project.runpytest(
        "--model=scripted:m", "--baseline-model=scripted:down", "--lmms-cache=cache"
    )
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*qa[[]0[]]: baseline model (scripted:down) call failed: RuntimeError*"])


def test_bad_baseline_options_are_usage_errors(lmms_project: pytest.Pytester) -> None:
    write_task(lmms_project, "qa", 2, wrong=[])
    result = lmms_project.runpytest("--model=scripted:m", "--baseline-model=nosuch:x", "--lmms-cache=cache")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown backend 'nosuch'*"])
    both = lmms_project.runpytest("--baseline=x", "--baseline-model=scripted:m")
    assert both.ret == pytest.ExitCode.USAGE_ERROR
