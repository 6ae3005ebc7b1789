"""CI gates: turn a score below a threshold, or a significant regression, into an exit code."""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_lmms.report._records import GateFailureRecord, RunResults, TaskComparison, TaskResult

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

    def record(self) -> GateFailureRecord:
        return GateFailureRecord(gate=self.gate, message=self.message)


def check_fail_under(
    results: RunResults | Mapping[str, TaskResult], gates: Sequence[FailUnder]
) -> list[GateFailure]:
    """Each gate against the metrics of the tasks it names (a run's, or its task results)."""
    tasks = results.tasks if isinstance(results, RunResults) else results
    failures = []
    for gate in gates:
        matched = False
        for task, info in tasks.items():
            if not fnmatch.fnmatchcase(task, gate.task):
                continue
            estimate = info.metrics.get(gate.metric)
            if estimate is None:
                continue
            matched = True
            value = estimate.value
            higher = estimate.higher_is_better is not False
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


def regression_p_value(
    comparison: TaskComparison | Mapping[str, Any], margin: float, higher_is_better: bool
) -> float | None:
    """Two-sided p-value of the test that the paired difference equals -margin (worse side).

    The shifted t statistic uses the comparison's SE and its degrees of freedom: n - 1 for
    the paired t test, G - 1 with clusters (the same as the printed interval).
    """
    from scipy import stats as scipy_stats

    c = _typed(comparison)
    diff, se = c.diff, c.se
    if diff is None or se is None or math.isnan(se):
        return None
    worse_by = -diff if higher_is_better else diff  # > 0 means the current run is worse
    excess = worse_by - margin
    if se == 0:
        return 0.0 if excess > 0 else 1.0
    df = (c.n_clusters or c.n) - 1
    return float(2 * scipy_stats.t.sf(abs(excess / se), df))


def _typed(comparison: TaskComparison | Mapping[str, Any]) -> TaskComparison:
    """A comparison as the schema reads it (callers may pass the JSON form)."""
    if isinstance(comparison, TaskComparison):
        return comparison
    from pytest_lmms.report._schema import decode

    # the statistics alone (a hand-built comparison) are enough for the p-value
    return decode(TaskComparison, {"metric": "?", "n": 0, **comparison}, "comparison")


def check_regressions(
    comparisons: Mapping[str, TaskComparison | Mapping[str, Any]],
    higher_is_better: Mapping[str, bool],
    margin: float,
    alpha: float = 0.05,
) -> list[GateFailure]:
    """A task fails when it is worse than the baseline by more than ``margin``, significantly
    after Holm's adjustment across every compared task."""
    from pytest_lmms.stats import holm

    typed = {task: _typed(c) for task, c in comparisons.items()}
    tested: list[tuple[str, float]] = []
    for task, comparison in typed.items():
        higher = higher_is_better.get(task, True)
        p = regression_p_value(comparison, margin, higher)
        diff = comparison.diff
        if p is None or diff is None:
            continue
        worse_by = -diff if higher else diff
        tested.append((task, p if worse_by > margin else 1.0))
    failures = []
    for (task, _), p_adjusted in zip(tested, holm([p for _, p in tested]), strict=True):
        if p_adjusted < alpha:
            c = typed[task]
            failures.append(
                GateFailure(
                    "regression",
                    f"{task}:{c.metric} is worse than the baseline by {abs(c.diff or 0.0):.4f} "
                    f"(95% CI of the difference [{_num(c.ci_low):.4f}, {_num(c.ci_high):.4f}], "
                    f"margin {margin:g}, Holm-adjusted p = {p_adjusted:.4g})",
                )
            )
    return failures


def _num(value: float | None) -> float:
    return math.nan if value is None else value
