"""`pytest-lmms merge`: the shard runs of one evaluation (``--lmms-shard=i/n``) as one run.

Samples are united per task (a sample answered by two shards is an error naming it, as are
runs of different models), each task is aggregated again from all its samples with the
task's own YAML (so intervals and bootstraps see every cluster), and a results.json is
written next to merged samples files. Paired comparisons and gates are not recomputed: run
``pytest-lmms compare`` on the merged run.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_lmms.report._records import (
    RESULTS_SCHEMA_VERSION,
    Completeness,
    MetricResult,
    RunResults,
    TaskResult,
    Timings,
)
from pytest_lmms.types import SampleResult

if TYPE_CHECKING:
    from pytest_lmms.report._compare import SavedRun


def merge_runs(runs: Sequence[str | Path], out: str | Path) -> RunResults:
    from pytest_lmms.report._compare import load_run
    from pytest_lmms.report._results import throughput
    from pytest_lmms.report._schema import write_results, write_samples

    if len(runs) < 2:
        raise ValueError("merge needs at least two runs")
    saved = [load_run(run) for run in runs]
    first = saved[0]
    model = first.results.model.spec
    for other in saved[1:]:
        if other.results.model.spec != model:
            raise ValueError(
                f"{other.path}: model {other.results.model.spec!r} is not "
                f"{model!r} of {first.path}: these are not shards of one run"
            )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    by_task = _united_samples(saved)
    yaml_of: dict[str, str] = {}
    failed: dict[str, int] = {}
    planned: dict[str, int] = {}
    for run in saved:
        for name, info in run.results.tasks.items():
            if info.yaml:
                yaml_of.setdefault(name, info.yaml)
            failed[name] = failed.get(name, 0) + info.failed
            if info.planned is not None:
                planned[name] = planned.get(name, 0) + info.planned
    tasks: dict[str, TaskResult] = {}
    for name in sorted(set(by_task) | set(failed)):
        results = sorted(by_task.get(name, []), key=lambda r: (r.doc_id, r.repeat))
        wall = max(_task_wall(run, name) for run in saved)
        tasks[name] = replace(
            _merged_task(name, results, yaml_of.get(name), out),
            failed=failed.get(name, 0),
            planned=planned.get(name),
            wall_s=wall,
            throughput=throughput(results, wall),
        )
    all_results = [r for results in by_task.values() for r in results]
    wall = max(run.results.timings.wall_s for run in saved)
    merged = RunResults(
        schema_version=RESULTS_SCHEMA_VERSION,
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        config={**first.results.config, "shard": None},
        model=first.results.model,
        versions=first.results.versions,
        git=first.results.git,
        merged_from=tuple(str(run.path) for run in saved),
        tasks=tasks,
        timings=Timings(wall_s=wall),
        throughput=throughput(all_results, wall),
        results_file=str(out / "results.json"),
        not_done=tuple(entry for run in saved for entry in run.results.not_done),
        completeness=_completeness(saved, tasks),
    )
    write_results(out / "results.json", merged)
    for name, results in by_task.items():
        write_samples(out / f"samples_{name}.jsonl", sorted(results, key=lambda r: (r.doc_id, r.repeat)))
    return merged


def _united_samples(saved: Sequence[SavedRun]) -> dict[str, list[SampleResult]]:
    """Every shard's samples per task; a sample in two shards is an error naming both."""
    by_task: dict[str, list[SampleResult]] = {}
    seen: dict[tuple[str, str, int], Path] = {}
    for run in saved:
        for name, samples in run.samples.items():
            for sample in samples:
                key = (name, sample.doc_id, sample.repeat)
                if key in seen:
                    raise ValueError(
                        f"{name}[{sample.doc_id}] (repeat {sample.repeat}) is in both {seen[key]} and "
                        f"{run.path}: shards must not overlap"
                    )
                seen[key] = run.path
                by_task.setdefault(name, []).append(sample)
    return by_task


def _merged_task(name: str, results: list[SampleResult], yaml: str | None, out: Path) -> TaskResult:
    """The task aggregated again from all its samples, with its own YAML."""
    from pytest_lmms.tasks import load_task

    if not results:
        return TaskResult(yaml=yaml)
    if yaml is None:
        raise ValueError(f"no run records the YAML of task {name!r}")
    task = load_task(f"{yaml}::{name}")
    metrics = {
        metric: MetricResult.of(estimate, task.higher_is_better(metric))
        for metric, estimate in task.aggregate(results).items()
    }
    return TaskResult(
        yaml=yaml,
        fingerprint=task.fingerprint,
        n=len(results),
        metrics=metrics,
        missing_metrics=tuple(m for m in task.metric_names if m not in metrics),
        samples_file=str(out / f"samples_{name}.jsonl"),
    )


def _task_wall(run: SavedRun, name: str) -> float:
    info = run.results.tasks.get(name)
    if info is None or info.throughput is None:
        return 0.0
    return info.throughput.wall_s


def _completeness(saved: Sequence[SavedRun], tasks: dict[str, TaskResult]) -> Completeness | None:
    """The shards' completeness summed: the merged run is complete when every shard was."""
    shards = [run.results.completeness for run in saved]
    if any(c is None for c in shards):
        return None  # a shard written before completeness was recorded
    scored = sum(info.n for info in tasks.values())
    failed = sum(info.failed for info in tasks.values())
    planned = sum(c.planned for c in shards if c is not None)
    return Completeness(
        planned=planned,
        done=scored + failed,
        scored=scored,
        failed=failed,
        not_done=sum(c.not_done for c in shards if c is not None),
        interrupted=any(c.interrupted for c in shards if c is not None),
        complete=all(c.complete for c in shards if c is not None),
    )
