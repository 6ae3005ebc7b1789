"""CI gates: turn a score below a threshold, or a significant regression, into an exit code."""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_FAIL_UNDER = re.compile(r"^(?P<task>[^:=]+):(?P<metric>[^=]+)=(?P<value>[-+0-9.eE]+)$")


@dataclass(frozen=True)
class FailUnder:
    task: str  # a name or an fnmatch glob
    metric: str
    threshold: float

    @classmethod
    def parse(cls, spec: str) -> FailUnder:
        match = _FAIL_UNDER.match(spec.strip())
        if match is None:
            raise ValueError(
                f"--lmms-fail-under expects TASK:METRIC=VALUE (for example mme:accuracy=0.8), got {spec!r}"
            )
        return cls(match["task"].strip(), match["metric"].strip(), float(match["value"]))


@dataclass(frozen=True)
class GateFailure:
    gate: str
    message: str


def check_fail_under(results: Mapping[str, Any], gates: Sequence[FailUnder]) -> list[GateFailure]:
    failures = []
    for gate in gates:
        matched = False
        for task, info in results["tasks"].items():
            if not fnmatch.fnmatchcase(task, gate.task):
                continue
            estimate = info["metrics"].get(gate.metric)
            if estimate is None:
                continue
            matched = True
            value = estimate["value"]
            higher = estimate.get("higher_is_better", True)
            below = value is None or (value < gate.threshold if higher else value > gate.threshold)
            if below:
                relation = "<" if higher else ">"
                failures.append(
                    GateFailure(
                        "fail-under",
                        f"{task}:{gate.metric} = {value:.4f} {relation} {gate.threshold:g}"
                        if value is not None
                        else f"{task}:{gate.metric} has no value",
                    )
                )
        if not matched:
            failures.append(
                GateFailure("fail-under", f"{gate.task}:{gate.metric}: no such task and metric in this run")
            )
    return failures


def regression_p_value(comparison: Mapping[str, Any], margin: float, higher_is_better: bool) -> float | None:
    """Two-sided p-value of the test that the paired difference equals -margin (worse side).

    The shifted t statistic uses the comparison's SE and its degrees of freedom: n - 1 for
    the paired t test, G - 1 with clusters (the same as the printed interval).
    """
    from scipy import stats as scipy_stats

    diff, se = comparison.get("diff"), comparison.get("se")
    if diff is None or se is None or math.isnan(se):
        return None
    worse_by = -diff if higher_is_better else diff  # > 0 means the current run is worse
    excess = worse_by - margin
    if se == 0:
        return 0.0 if excess > 0 else 1.0
    df = (comparison.get("n_clusters") or comparison["n"]) - 1
    return float(2 * scipy_stats.t.sf(abs(excess / se), df))


def check_regressions(
    comparisons: Mapping[str, Mapping[str, Any]],
    higher_is_better: Mapping[str, bool],
    margin: float,
    alpha: float = 0.05,
) -> list[GateFailure]:
    """A task fails when it is worse than the baseline by more than ``margin``, significantly
    after Holm's adjustment across every compared task."""
    from pytest_lmms.stats import holm

    tested: list[tuple[str, float]] = []
    for task, comparison in comparisons.items():
        higher = higher_is_better.get(task, True)
        p = regression_p_value(comparison, margin, higher)
        diff = comparison.get("diff")
        if p is None or diff is None:
            continue
        worse_by = -diff if higher else diff
        tested.append((task, p if worse_by > margin else 1.0))
    failures = []
    for (task, _), p_adjusted in zip(tested, holm([p for _, p in tested]), strict=True):
        if p_adjusted < alpha:
            c = comparisons[task]
            failures.append(
                GateFailure(
                    "regression",
                    f"{task}:{c['metric']} is worse than the baseline by {abs(c['diff']):.4f} "
                    f"(95% CI of the difference [{c['ci_low']:.4f}, {c['ci_high']:.4f}], margin {margin:g}, "
                    f"Holm-adjusted p = {p_adjusted:.4g})",
                )
            )
    return failures
