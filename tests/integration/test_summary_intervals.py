"""The interval a user reads in the summary table and results.json for 0/1 scores at the
boundary (real pytest sessions with the scripted backend)."""

from __future__ import annotations

import json

import pytest
import scipy.stats
from statsmodels.stats.proportion import proportion_confint

from tests.helpers import qa_rows, qa_task_yaml, write_jsonl


def run_task(pytester: pytest.Pytester, n: int, wrong: list[int], extra: str = "", **rows: int) -> dict:
    write_jsonl(pytester.path / "qa.jsonl", qa_rows(n, wrong=wrong, **rows))
    pytester.makefile(".yaml", qa=qa_task_yaml("qa", "qa.jsonl", extra))
    result = pytester.runpytest("--model=scripted:m", "--lmms-output=results", "--lmms-cache=cache")
    assert result.ret == pytest.ExitCode.OK
    (path,) = pytester.path.glob("results/*/results.json")
    metric = json.loads(path.read_text())["tasks"]["qa"]["metrics"]["exact_match"]
    return {"stdout": result.stdout, **metric}


def test_none_right_is_not_printed_as_a_certain_zero(lmms_project: pytest.Pytester) -> None:
    metric = run_task(lmms_project, n=6, wrong=list(range(6)))
    # 0 of 6: the Agresti-Coull upper bound, not the t interval's [0, 0]
    metric["stdout"].fnmatch_lines(
        ["qa * exact_match * 0.0000 * [[]0.0000, 0.4428[]] * 6 * - * agresti-coull *"]
    )
    assert metric["method"] == "agresti-coull"
    assert (metric["ci_low"], metric["ci_high"]) == pytest.approx(
        proportion_confint(0, 6, method="agresti_coull"), rel=1e-9, abs=1e-12
    )


def test_all_right_in_clusters_keeps_a_lower_bound_below_one(lmms_project: pytest.Pytester) -> None:
    metric = run_task(lmms_project, n=12, wrong=[], extra="cluster_key: group\n", cluster_size=3)
    metric["stdout"].fnmatch_lines(
        ["qa * exact_match * 1.0000 * [[]0.*, 1.0000[]] * 12 * 4 * agresti-coull-cluster *"]
    )
    assert metric["method"] == "agresti-coull-cluster" and metric["n_clusters"] == 4
    # no variability: the design effect is taken as 1 and the t quantile has G - 1 = 3 df
    # (statsmodels' interval at the level whose normal quantile is that t quantile)
    alpha = 2 * scipy.stats.norm.sf(scipy.stats.t.ppf(0.975, 3))
    low, _ = proportion_confint(12, 12, alpha=alpha, method="agresti_coull")
    assert metric["ci_low"] == pytest.approx(low) and metric["ci_high"] == 1.0
