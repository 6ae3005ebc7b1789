"""End of a run: aggregate per task, write results.json, format the terminal summary."""

from __future__ import annotations

import math
import time
import typing
from collections import defaultdict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from pytest_lmms.report._records import (
    RESULTS_SCHEMA_VERSION,
    ComparisonResult,
    Completeness,
    Gates,
    JudgeInfo,
    JudgePromptRecord,
    JudgeUse,
    MetricResult,
    ModelInfo,
    NotDone,
    RunResults,
    StabilityResult,
    TaskResult,
    Timings,
    VarianceRow,
)
from pytest_lmms.types import SampleResult

if TYPE_CHECKING:
    from pytest_lmms._session import LmmsSession


def build_results(state: LmmsSession, session: pytest.Session, wall_s: float) -> dict[str, Any]:
    """Aggregate the run, write results.json, and return it in its JSON form (what
    ``evaluate()`` hands back and the summary lines read)."""
    from pytest_lmms.report import encode

    return typing.cast(dict[str, Any], encode(build_run_results(state, session, wall_s)))


def build_run_results(state: LmmsSession, session: pytest.Session, wall_s: float) -> RunResults:
    from pytest_lmms.report import git_commit, package_versions, throughput, write_results

    by_task = _by_task(state.results)
    tasks = {
        name: _task_result(state, name, by_task.get(name, []), wall_s)
        for name in sorted(set(by_task) | set(state.failed) | set(state.planned))
    }
    results_path = state.run_dir / "results.json"
    if state.run.baseline:
        comparison = _compare_with_baseline(state, by_task)
    elif state.baseline_model is not None:
        comparison = _compare_with_baseline_model(state, by_task)
    else:
        comparison = None
    run = RunResults(
        schema_version=RESULTS_SCHEMA_VERSION,
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        config=state.run.to_json(),
        model=ModelInfo(spec=state.run.model, identity=_safe_identity(state)),
        versions=package_versions(),
        git=git_commit(session.config.rootpath),
        tasks=tasks,
        timings=Timings(wall_s=round(wall_s, 4)),
        throughput=throughput(state.results, wall_s),
        results_file=str(results_path),
        judge=_judge_info(state, by_task),
        comparison=comparison,
        gates=_check_gates(state, tasks, comparison),
        not_done=tuple(NotDone(nodeid=n, reason=why) for n, why in sorted(state.not_done.items())),
        completeness=_completeness(state, tasks),
    )
    write_results(results_path, run)
    return run


def _task_result(state: LmmsSession, name: str, results: list[SampleResult], wall_s: float) -> TaskResult:
    from pytest_lmms.report import throughput

    error = state.task_errors.get(name)
    task = state.tasks.get(name) if error is None else None
    metrics: dict[str, MetricResult] = {}
    if task is not None and results:
        for metric, estimate in task.aggregate(results).items():
            metrics[metric] = MetricResult.of(estimate, task.higher_is_better(metric))
    if task is not None and results and state.run.repeats > 1 and task.primary_metric:
        stability_info = _stability(results, task.primary_metric)
    else:
        stability_info = None
    # a metric the YAML declares that no sample produced is named, never dropped quietly
    missing = [m for m in task.metric_names if m not in metrics] if task is not None and results else []
    span = state.task_spans.get(name)
    task_wall = span[1] - span[0] if span is not None else wall_s
    return TaskResult(
        yaml=str(task.path) if task is not None else None,
        fingerprint=task.fingerprint if task is not None else None,
        n=len(results),
        failed=state.failed.get(name, 0),
        planned=state.planned.get(name),
        metrics=metrics,
        missing_metrics=tuple(missing),
        samples_file=str(state.writer.path_for(name)) if results else None,
        # from the task's first sample starting to its last one ending
        wall_s=round(task_wall, 4),
        throughput=throughput(results, task_wall),
        stability=stability_info,
        judge=_judge_use(results),
        error=error,
    )


def _completeness(state: LmmsSession, tasks: Mapping[str, TaskResult]) -> Completeness:
    """Planned against done: a run cut short (Ctrl-C, -x, a dead worker) says so."""
    planned = sum(state.planned.values())
    scored = sum(info.n for info in tasks.values())
    failed = sum(info.failed for info in tasks.values())
    done = scored + failed
    return Completeness(
        planned=planned,
        done=done,
        scored=scored,
        failed=failed,
        not_done=len(state.not_done),
        interrupted=state.interrupted,
        complete=not state.interrupted and not state.not_done and done >= planned,
    )


def _by_task(results: list[SampleResult]) -> dict[str, list[SampleResult]]:
    """Results per task in one order whatever order they arrived in (xdist workers report
    in any order), so every sum, pairing and bootstrap sees the same sequence."""
    by_task: dict[str, list[SampleResult]] = defaultdict(list)
    for result in results:
        by_task[result.task].append(result)
    for rows in by_task.values():
        rows.sort(key=lambda r: (r.doc_id, r.repeat))
    return dict(by_task)


def _judge_use(results: list[SampleResult]) -> JudgeUse | None:
    judged = [r for r in results if r.judge_calls]
    if not judged:
        return None
    return JudgeUse(samples=len(judged), calls=sum(r.judge_calls for r in judged))


def _judge_info(state: LmmsSession, by_task: dict[str, list[SampleResult]]) -> JudgeInfo | None:
    """The judge's model and the exact text of every judge prompt this run asked."""
    runner = state.judge_runner
    if runner is None:
        return None
    from pytest_lmms.scoring.judge import prompt_records

    prompts = prompt_records(
        name for results in by_task.values() for r in results for name in r.judge_prompts
    )
    return JudgeInfo(
        model=runner.spec,
        identity=state.identity_of("judge", runner),
        prompts={
            name: JudgePromptRecord(**record) if record is not None else None
            for name, record in prompts.items()
        },
    )


def _stability(results: list[SampleResult], metric: str, top: int = 10) -> StabilityResult | None:
    """EA, CA, IV, CR over the repeats of each question, and the least stable questions."""
    from pytest_lmms.scoring import normalize_answer
    from pytest_lmms.stats import stability

    scores: dict[str, list[float]] = defaultdict(list)
    answers: dict[str, list[str]] = defaultdict(list)
    for result in results:
        if metric in result.scores:
            scores[result.doc_id].append(result.scores[metric])
            answers[result.doc_id].append(normalize_answer(result.response))
    repeated = {doc: values for doc, values in scores.items() if len(values) >= 2}
    if not repeated:
        return None
    summary = stability(repeated, {doc: answers[doc] for doc in repeated}).to_json()
    spread = sorted(
        ((doc, float(np.var(values)), float(np.mean(values))) for doc, values in repeated.items()),
        key=lambda row: (-row[1], row[0]),
    )
    return StabilityResult(
        **summary,
        metric=metric,
        highest_internal_variance=tuple(
            VarianceRow(doc_id=doc, variance=variance, mean=mean) for doc, variance, mean in spread[:top]
        ),
    )


def _compare_with_baseline(state: LmmsSession, by_task: dict[str, list[SampleResult]]) -> ComparisonResult:
    from pytest_lmms.report import compare_runs, load_run

    assert state.run.baseline is not None
    try:
        baseline = load_run(state.run.baseline)
    except ValueError as exc:
        return ComparisonResult(baseline=str(state.run.baseline), error=str(exc))
    primary = {name: task.primary_metric for name, task in state.tasks.items() if task.primary_metric}
    clustered = {name: task.spec.cluster_key is not None for name, task in state.tasks.items()}
    return ComparisonResult(
        baseline=str(baseline.path),
        baseline_model=baseline.label,
        tasks=compare_runs(by_task, baseline.samples, primary, clustered),
    )


def _compare_with_baseline_model(
    state: LmmsSession, by_task: dict[str, list[SampleResult]]
) -> ComparisonResult:
    from pytest_lmms.report import compare_runs

    model = state.baseline_model
    assert model is not None
    baseline_by_task = _by_task(state.baseline_results)
    primary = {name: task.primary_metric for name, task in state.tasks.items() if task.primary_metric}
    clustered = {name: task.spec.cluster_key is not None for name, task in state.tasks.items()}
    metrics: dict[str, dict[str, MetricResult]] = {}
    for name, results in baseline_by_task.items():
        task = state.tasks.get(name)
        if task is not None:
            metrics[name] = {metric: MetricResult.of(est) for metric, est in task.aggregate(results).items()}
    return ComparisonResult(
        baseline=None,
        baseline_model=model.spec,
        baseline_identity=state.identity_of("baseline_model", model),
        baseline_metrics=metrics,
        baseline_samples={
            name: str(state.writer.path_for(name, "baseline_samples_")) for name in baseline_by_task
        },
        tasks=compare_runs(by_task, baseline_by_task, primary, clustered),
    )


def _check_gates(
    state: LmmsSession, tasks: Mapping[str, TaskResult], comparison: ComparisonResult | None
) -> Gates:
    from pytest_lmms.report import FailUnder, GateFailure, check_fail_under, check_regressions

    failures = check_fail_under(tasks, [FailUnder.parse(spec) for spec in state.run.fail_under])
    if state.run.fail_on_regression is not None and comparison is not None:
        if comparison.error:
            failures.append(GateFailure("regression", f"baseline unusable: {comparison.error}"))
        else:
            higher = {
                name: state.tasks[name].higher_is_better(c.metric)
                for name, c in comparison.tasks.items()
                if name in state.tasks
            }
            failures += check_regressions(comparison.tasks, higher, state.run.fail_on_regression)
    if state.run.strict_metrics:
        failures += [
            GateFailure("strict-metrics", f"{name}: no sample produced {', '.join(info.missing_metrics)}")
            for name, info in tasks.items()
            if info.missing_metrics
        ]
    return Gates(
        fail_under=tuple(state.run.fail_under),
        fail_on_regression=state.run.fail_on_regression,
        failures=tuple(f.record() for f in failures),
    )


def _safe_identity(state: LmmsSession) -> dict[str, Any] | None:
    return state.identity_of("model", state.model)


def _typed(results: RunResults | Mapping[str, Any]) -> RunResults:
    if isinstance(results, RunResults):
        return results
    from pytest_lmms.report import results_from_json

    return results_from_json(results)


def _row(task: str, metric: str, est: MetricResult | None, failed: int, method: str = "-") -> dict[str, Any]:
    if est is None:
        return {
            "task": task,
            "metric": metric,
            "value": None,
            "ci_low": None,
            "ci_high": None,
            "n": 0,
            "n_clusters": None,
            "method": method,
            "failed": failed,
        }
    return {
        "task": task,
        "metric": metric,
        "value": est.value,
        "ci_low": est.ci_low if est.ci_low is not None else math.nan,
        "ci_high": est.ci_high if est.ci_high is not None else math.nan,
        "n": est.n,
        "n_clusters": est.n_clusters,
        "method": est.method,
        "failed": failed,
    }


def summary_lines(results: RunResults | Mapping[str, Any]) -> list[str]:
    from pytest_lmms.report import format_table

    run = _typed(results)
    rows = []
    for task, info in run.tasks.items():
        if not info.metrics:
            rows.append({**_row(task, "-", None, info.failed), "n": info.n})
        rows += [_row(task, metric, est, info.failed) for metric, est in info.metrics.items()]
        rows += [_row(task, m, None, info.failed, "no sample produced it") for m in info.missing_metrics]
    lines = format_table(rows)
    total = run.throughput
    lines.append("")
    if total is not None:
        lines.append(
            f"model {run.model.spec}: {total.samples} samples, {total.cached} from cache, "
            f"{total.model_calls} model calls, {total.wall_s:.2f} s"
        )
    lines.append(f"results: {run.results_file}")
    completeness = run.completeness
    if completeness is not None and not completeness.complete:
        why = " (interrupted)" if completeness.interrupted else ""
        lines.append(
            f"incomplete run{why}: {completeness.done} of {completeness.planned} planned samples done "
            f"({completeness.failed} failed); the scores cover the samples done only"
        )
    lines += _stability_lines(run)
    lines += _judge_lines(run)
    comparison = run.comparison
    if comparison is not None:
        from pytest_lmms.report import format_comparisons

        lines.append("")
        if comparison.error:
            lines.append(f"baseline not compared: {comparison.error}")
        else:
            lines += format_comparisons(comparison.tasks, str(comparison.baseline_model))
    return lines


def _stability_lines(run: RunResults) -> list[str]:
    stable = {task: info.stability for task, info in run.tasks.items() if info.stability is not None}
    if not stable:
        return []
    lines = [
        "",
        "stability over repeats (EA expected acc., CA consensus acc., IV internal variance, CR consistency):",
    ]
    for task, st in stable.items():
        lines.append(
            f"  {task} ({st.metric}, k={st.k}, {st.n_questions} questions): "
            f"EA {st.expected_accuracy:.4f}  CA {st.consensus_accuracy:.4f}  "
            f"IV {st.internal_variance:.4f}  CR {st.consistency_rate:.4f}"
        )
    return lines


def _judge_lines(run: RunResults) -> list[str]:
    judged = {task: info for task, info in run.tasks.items() if info.judge is not None}
    if not judged:
        return []
    model = run.judge.model if run.judge is not None else "the judge"
    lines = [""]
    for task, info in judged.items():
        assert info.judge is not None
        lines.append(
            f"judge {model}: {task}: {info.judge.samples} of {info.n} samples needed the judge "
            f"({info.judge.calls} calls)"
        )
    return lines


def error_lines(results: RunResults | Mapping[str, Any]) -> list[str]:
    run = _typed(results)
    lines = [
        f"pytest-lmms: {task} not aggregated: {info.error}" for task, info in run.tasks.items() if info.error
    ]
    if run.not_done:
        crashed = [entry.nodeid for entry in run.not_done if not entry.reason.startswith("never run")]
        never_run = [entry.nodeid for entry in run.not_done if entry.reason.startswith("never run")]
        if crashed:
            lines.append(
                f"pytest-lmms: {len(crashed)} sample(s) not done, their worker died: " + _some(crashed)
            )
        if never_run:
            lines.append(
                f"pytest-lmms: {len(never_run)} sample(s) never run, the run stopped before them: "
                + _some(never_run)
            )
        if run.config.get("cache_dir") is not None:
            lines.append(
                "  run the same command again with the same cache: answers already given come "
                "from the cache, only the missing ones are computed"
            )
        else:
            lines.append("  run the same command again to complete them (this run kept no response cache)")
    return lines


def _some(nodeids: list[str], shown: int = 10) -> str:
    more = len(nodeids) - shown
    return ", ".join(nodeids[:shown]) + (f" and {more} more (results.json lists them)" if more > 0 else "")


def gate_lines(results: RunResults | Mapping[str, Any]) -> list[str]:
    return [f"pytest-lmms gate failed ({f.gate}): {f.message}" for f in _typed(results).gates.failures]
