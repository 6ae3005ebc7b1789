"""Paired comparison of a run against a baseline run, task by task."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from pytest_lmms.report._results import read_samples
from pytest_lmms.types import SampleResult


@dataclass(frozen=True)
class SavedRun:
    """A results.json with the samples of each of its tasks."""

    path: Path
    results: Mapping[str, Any]
    samples: Mapping[str, list[SampleResult]]

    @property
    def label(self) -> str:
        return str(self.results.get("model", {}).get("spec") or self.path.parent.name)


def load_run(path: str | Path) -> SavedRun:
    """Load ``results.json`` (or a run folder holding one) and its samples files."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    try:
        results = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise ValueError(f"baseline {path}: cannot read: {exc}") from None
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"baseline {path}: not a results.json: {exc}") from None
    if not isinstance(results, dict) or "tasks" not in results:
        raise ValueError(f"baseline {path}: not a pytest-lmms results.json (no 'tasks')")
    samples: dict[str, list[SampleResult]] = {}
    for task, info in results["tasks"].items():
        recorded = info.get("samples_file")
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
) -> dict[str, Any]:
    """Paired difference current - baseline on the documents both runs scored."""
    from pytest_lmms.stats import compare

    a, clusters = _per_doc(current, metric)
    b, _ = _per_doc(baseline, metric)
    shared = sorted(set(a) & set(b))
    out: dict[str, Any] = {
        "metric": metric,
        "n": len(shared),
        "only_in_current": len(set(a) - set(b)),
        "only_in_baseline": len(set(b) - set(a)),
    }
    if not shared:
        out["error"] = "no document was scored in both runs"
        return out
    cluster_map = {i: clusters[i] for i in shared} if clustered and all(clusters[i] for i in shared) else None
    comparison = compare({i: a[i] for i in shared}, {i: b[i] for i in shared}, clusters=cluster_map)
    out.update(comparison.to_json())
    out["current"] = sum(a[i] for i in shared) / len(shared)
    out["baseline"] = sum(b[i] for i in shared) / len(shared)
    out["agreement"] = _agreement(a, b, shared)
    return out


def compare_runs(
    current: Mapping[str, Sequence[SampleResult]],
    baseline: Mapping[str, Sequence[SampleResult]],
    primary_metrics: Mapping[str, str],
    clustered: Mapping[str, bool],
) -> dict[str, dict[str, Any]]:
    """Per task present in both runs: the paired comparison, with Holm-adjusted p-values."""
    from pytest_lmms.stats import holm

    comparisons = {
        task: compare_task(current[task], baseline[task], primary_metrics[task], clustered.get(task, False))
        for task in sorted(set(current) & set(baseline))
        if task in primary_metrics
    }
    tested = [t for t, c in comparisons.items() if c.get("p_value") is not None]
    for task, adjusted in zip(tested, holm([comparisons[t]["p_value"] for t in tested]), strict=True):
        comparisons[task]["p_holm"] = adjusted
    for comparison in comparisons.values():
        comparison.setdefault("p_holm", None)
    return comparisons


def format_comparisons(comparisons: Mapping[str, Mapping[str, Any]], baseline_label: str) -> list[str]:
    def fmt(x: Any, digits: int = 4) -> str:
        return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"

    rows = [
        ["task", "metric", "current", "baseline", "diff", "95% CI", "p (Holm)", "n", "agree (RR/R-/-R/--)"]
    ]
    for task, c in comparisons.items():
        agreement = c.get("agreement")
        agree = (
            "/".join(str(agreement[k]) for k in ("both_right", "only_current", "only_baseline", "both_wrong"))
            if agreement
            else "-"
        )
        rows.append(
            [
                task,
                str(c["metric"]),
                fmt(c.get("current")),
                fmt(c.get("baseline")),
                fmt(c.get("diff")),
                f"[{fmt(c.get('ci_low'))}, {fmt(c.get('ci_high'))}]",
                fmt(c.get("p_holm"), 4),
                str(c["n"]),
                agree,
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [f"paired comparison with baseline {baseline_label} (current - baseline):"]
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    unmatched = {
        t: (c["only_in_current"], c["only_in_baseline"])
        for t, c in comparisons.items()
        if c["only_in_current"] or c["only_in_baseline"]
    }
    for task, (only_current, only_baseline) in unmatched.items():
        lines.append(
            f"note: {task}: compared on the {comparisons[task]['n']} shared documents; "
            f"{only_current} only in this run, {only_baseline} only in the baseline"
        )
    return lines
