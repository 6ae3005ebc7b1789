"""Paired comparison of a run against a baseline run, task by task."""

from __future__ import annotations

import math
import typing
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pytest_lmms.report._records import Agreement, RunResults, TaskComparison
from pytest_lmms.report._results import read_samples
from pytest_lmms.report._schema import read_results, results_path
from pytest_lmms.types import SampleResult


@dataclass(frozen=True)
class SavedRun:
    """A results.json with the samples of each of its tasks."""

    path: Path
    results: RunResults
    samples: Mapping[str, list[SampleResult]]

    @property
    def label(self) -> str:
        return str(self.results.model.spec or self.path.parent.name)


def load_run(path: str | Path) -> SavedRun:
    """Load ``results.json`` (or a run folder holding one) and its samples files."""
    path = results_path(path)
    try:
        results = read_results(path)
    except ValueError as exc:
        raise ValueError(f"baseline {exc}") from None
    samples: dict[str, list[SampleResult]] = {}
    for task, info in results.tasks.items():
        recorded = info.samples_file
        if not recorded:
            continue
        candidates = [Path(recorded), path.parent / Path(recorded).name]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise ValueError(
                f"baseline {path}: samples file of task {task!r} not found (looked for {recorded})"
            )
        samples[task] = read_samples(found)
    return SavedRun(path=path, results=results, samples=samples)


def _per_doc(results: Sequence[SampleResult], metric: str) -> tuple[dict[str, float], dict[str, str | None]]:
    """Mean score per document (over repeats) and each document's cluster id."""
    scores: dict[str, list[float]] = defaultdict(list)
    clusters: dict[str, str | None] = {}
    for result in results:
        if metric in result.scores:
            scores[result.doc_id].append(result.scores[metric])
            clusters[result.doc_id] = result.cluster_id
    return {doc: sum(v) / len(v) for doc, v in scores.items()}, clusters


def _agreement(a: Mapping[str, float], b: Mapping[str, float], ids: Sequence[str]) -> dict[str, int] | None:
    """Right/wrong cross-tab, for metrics whose per-sample scores are 0 or 1."""
    if not all(a[i] in (0.0, 1.0) and b[i] in (0.0, 1.0) for i in ids):
        return None
    counts = {"both_right": 0, "only_current": 0, "only_baseline": 0, "both_wrong": 0}
    for i in ids:
        key = {(1.0, 1.0): "both_right", (1.0, 0.0): "only_current", (0.0, 1.0): "only_baseline"}.get(
            (a[i], b[i]), "both_wrong"
        )
        counts[key] += 1
    return counts


def compare_task(
    current: Sequence[SampleResult],
    baseline: Sequence[SampleResult],
    metric: str,
    clustered: bool,
) -> TaskComparison:
    """Paired difference current - baseline on the documents both runs scored."""
    from pytest_lmms.stats import compare

    a, clusters = _per_doc(current, metric)
    b, _ = _per_doc(baseline, metric)
    shared = sorted(set(a) & set(b))
    only_current, only_baseline = len(set(a) - set(b)), len(set(b) - set(a))
    if not shared:
        return TaskComparison(
            metric=metric,
            n=0,
            only_in_current=only_current,
            only_in_baseline=only_baseline,
            error="no document was scored in both runs",
        )
    cluster_map = {i: clusters[i] for i in shared} if clustered and all(clusters[i] for i in shared) else None
    comparison = compare({i: a[i] for i in shared}, {i: b[i] for i in shared}, clusters=cluster_map)
    agreement = _agreement(a, b, shared)
    return TaskComparison(
        metric=metric,
        only_in_current=only_current,
        only_in_baseline=only_baseline,
        **comparison.to_json(),
        current=sum(a[i] for i in shared) / len(shared),
        baseline=sum(b[i] for i in shared) / len(shared),
        agreement=Agreement(**agreement) if agreement is not None else None,
    )


def compare_runs(
    current: Mapping[str, Sequence[SampleResult]],
    baseline: Mapping[str, Sequence[SampleResult]],
    primary_metrics: Mapping[str, str],
    clustered: Mapping[str, bool],
) -> dict[str, TaskComparison]:
    """Per task present in both runs: the paired comparison, with Holm-adjusted p-values."""
    from pytest_lmms.stats import holm

    comparisons = {
        task: compare_task(current[task], baseline[task], primary_metrics[task], clustered.get(task, False))
        for task in sorted(set(current) & set(baseline))
        if task in primary_metrics
    }
    tested = [t for t, c in comparisons.items() if c.p_value is not None]
    adjusted = holm([typing.cast(float, comparisons[t].p_value) for t in tested])
    for task, p_holm in zip(tested, adjusted, strict=True):
        comparisons[task] = replace(comparisons[task], p_holm=p_holm)
    return comparisons


def format_comparisons(comparisons: Mapping[str, TaskComparison], baseline_label: str) -> list[str]:
    def fmt(x: Any, digits: int = 4) -> str:
        return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"

    rows = [
        ["task", "metric", "current", "baseline", "diff", "95% CI", "p (Holm)", "n", "agree (RR/R-/-R/--)"]
    ]
    for task, c in comparisons.items():
        a = c.agreement
        agree = f"{a.both_right}/{a.only_current}/{a.only_baseline}/{a.both_wrong}" if a else "-"
        rows.append(
            [
                task,
                c.metric,
                fmt(c.current),
                fmt(c.baseline),
                fmt(c.diff),
                f"[{fmt(c.ci_low)}, {fmt(c.ci_high)}]",
                fmt(c.p_holm, 4),
                str(c.n),
                agree,
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [f"paired comparison with baseline {baseline_label} (current - baseline):"]
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    for task, c in comparisons.items():
        if c.only_in_current or c.only_in_baseline:
            lines.append(
                f"note: {task}: compared on the {c.n} shared documents; "
                f"{c.only_in_current} only in this run, {c.only_in_baseline} only in the baseline"
            )
    return lines
