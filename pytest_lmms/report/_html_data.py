"""Everything the HTML report reads from run folders, in one place.

Runs are read through the typed results schema (``read_results``, ``sample_records``) and
the sections render the typed records; only the sample browser's embedded data is the
samples' JSON form (``ReportRun.samples``), exactly as the schema writes it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pytest_lmms.report._records import ComparisonResult, RunResults, TaskResult
from pytest_lmms.report._runs import sample_records
from pytest_lmms.report._schema import read_results, results_from_json
from pytest_lmms.types import SampleResult

Flip = Literal["worse", "better"]


@dataclass
class ReportRun:
    """One run folder: its results and its scored samples, in file order."""

    path: Path  # the run folder
    document: RunResults
    typed_samples: list[SampleResult] = field(default_factory=list)
    # the sample lines as the browser's data embeds them, derived once from the typed records
    samples: list[dict[str, Any]] = field(init=False)

    def __post_init__(self) -> None:
        self.samples = [sample.to_json() for sample in self.typed_samples]

    @property
    def label(self) -> str:
        """The model spec, with the folder name when the spec alone does not say which run."""
        spec = self.document.model.spec
        return f"{spec} ({self.path.name})" if spec else self.path.name

    @property
    def tasks(self) -> Mapping[str, TaskResult]:
        return self.document.tasks

    def primary_metric(self, task: str) -> str | None:
        """The task's first metric (the one the summary, gates and comparison use)."""
        info = self.document.tasks.get(task)
        return info.primary_metric if info is not None else None

    def sample_results(self) -> dict[str, list[SampleResult]]:
        by_task: dict[str, list[SampleResult]] = defaultdict(list)
        for sample in self.typed_samples:
            by_task[sample.task].append(sample)
        return dict(by_task)


def read_run(path: str | Path) -> ReportRun:
    """A run folder (or its results.json) with its samples; ValueError naming the file."""
    folder = Path(path)
    if folder.is_file():
        folder = folder.parent
    return ReportRun(folder, read_results(folder / "results.json"), list(sample_records(folder)))


def run_from_results(results: RunResults | Mapping[str, Any], run_dir: str | Path) -> ReportRun:
    """The run a session has just written (its results are already in memory)."""
    document = results if isinstance(results, RunResults) else results_from_json(results)
    return ReportRun(Path(run_dir), document, list(sample_records(run_dir)))


def sample_key(record: Mapping[str, Any]) -> tuple[str, str, int]:
    return (str(record.get("task")), str(record.get("doc_id")), int(record.get("repeat") or 0))


def sample_status(record: Mapping[str, Any], metric: str | None) -> Literal["right", "wrong", "unscored"]:
    """Wrong as the test session says it (``w`` / WRONG): the first metric scored 0; right
    when it scored anything else; unscored when the sample has no value for it."""
    value = (record.get("scores") or {}).get(metric) if metric is not None else None
    if value is None:
        return "unscored"
    return "wrong" if value == 0 else "right"


def doc_scores(run: ReportRun) -> dict[tuple[str, str], list[float]]:
    """Each document's first-metric scores over its repeats."""
    scores: dict[tuple[str, str], list[float]] = defaultdict(list)
    for record in run.samples:
        task = str(record.get("task"))
        metric = run.primary_metric(task)
        value = (record.get("scores") or {}).get(metric) if metric else None
        if value is not None:
            scores[(task, str(record.get("doc_id")))].append(float(value))
    return scores


def flips(current: ReportRun, baseline: ReportRun) -> dict[tuple[str, str], Flip]:
    """Documents right in one run and wrong in the other (mean first-metric score over
    repeats, 0/1 metrics only): "worse" when the baseline had them right."""
    now, before = doc_scores(current), doc_scores(baseline)
    out: dict[tuple[str, str], Flip] = {}
    for doc in sorted(set(now) & set(before)):
        a = sum(now[doc]) / len(now[doc])
        b = sum(before[doc]) / len(before[doc])
        if a in (0.0, 1.0) and b in (0.0, 1.0) and a != b:
            out[doc] = "worse" if b == 1.0 else "better"
    return out


def varying_docs(run: ReportRun) -> dict[tuple[str, str], float]:
    """Documents whose repeats disagree, with the variance of their scores."""
    out = {}
    for doc, values in doc_scores(run).items():
        if len(values) >= 2:
            mean = sum(values) / len(values)
            variance = sum((v - mean) ** 2 for v in values) / len(values)
            if variance > 0:
                out[doc] = variance
    return out


def comparison_with(current: ReportRun, baseline: ReportRun | None) -> ComparisonResult | None:
    """The paired comparison to show: the one the run recorded against this baseline (or
    against any, without one), else computed here from both runs' samples."""
    recorded = current.document.comparison
    if baseline is None:
        return recorded
    if recorded is not None and _same_run(recorded.baseline, baseline.path):
        return recorded
    from pytest_lmms.report._compare import compare_runs

    ours, theirs = current.sample_results(), baseline.sample_results()
    primary = {task: m for task in ours if (m := current.primary_metric(task)) is not None}
    clustered = {task: any(r.cluster_id for r in rows) for task, rows in ours.items()}
    return ComparisonResult(
        baseline=str(baseline.path / "results.json"),
        baseline_model=baseline.label,
        tasks=compare_runs(ours, theirs, primary, clustered),
    )


def _same_run(recorded: Any, folder: Path) -> bool:
    if not recorded:
        return False
    path = Path(str(recorded))
    path = path.parent if path.name == "results.json" else path
    try:
        return path.resolve() == folder.resolve()
    except OSError:
        return False


def baseline_records(baseline: ReportRun | None) -> dict[tuple[str, str, int], dict[str, Any]]:
    if baseline is None:
        return {}
    return {sample_key(r): r for r in baseline.samples}


def runs_label(runs: Sequence[ReportRun]) -> str:
    return ", ".join(run.label for run in runs)
