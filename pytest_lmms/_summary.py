"""End of a run: aggregate per task, write results.json, format the terminal summary."""

from __future__ import annotations

import math
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from pytest_lmms.types import SampleResult

if TYPE_CHECKING:
    from pytest_lmms._session import LmmsSession

RESULTS_SCHEMA_VERSION = 1


def build_results(state: LmmsSession, session: pytest.Session, wall_s: float) -> dict[str, Any]:
    from pytest_lmms.report import git_commit, package_versions, throughput, write_results

    by_task = _by_task(state.results)
    tasks: dict[str, Any] = {}
    for name in sorted(set(by_task) | set(state.failed) | set(state.planned)):
        error = state.task_errors.get(name)
        task = state.tasks.get(name) if error is None else None
        results = by_task.get(name, [])
        metrics: dict[str, Any] = {}
        if task is not None and results:
            for metric, estimate in task.aggregate(results).items():
                metrics[metric] = {**estimate.to_json(), "higher_is_better": task.higher_is_better(metric)}
        if task is not None and results and state.run.repeats > 1 and task.primary_metric:
            stability_info = _stability(results, task.primary_metric)
        else:
            stability_info = None
        # a metric the YAML declares that no sample produced is named, never dropped quietly
        missing = [m for m in task.metric_names if m not in metrics] if task is not None and results else []
        span = state.task_spans.get(name)
        task_wall = span[1] - span[0] if span is not None else wall_s
        tasks[name] = {
            "yaml": str(task.path) if task is not None else None,
            "fingerprint": task.fingerprint if task is not None else None,
            "n": len(results),
            "failed": state.failed.get(name, 0),
            "planned": state.planned.get(name),
            "metrics": metrics,
            "missing_metrics": missing,
            "samples_file": str(state.writer.path_for(name)) if results else None,
            # from the task's first sample starting to its last one ending
            "wall_s": round(task_wall, 4),
            "throughput": throughput(results, task_wall),
            "stability": stability_info,
            "judge": _judge_use(results),
        }
        if error is not None:
            tasks[name]["error"] = error
    results_path = state.run_dir / "results.json"
    data: dict[str, Any] = {
        "schema_version": RESULTS_SCHEMA_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": state.run.to_json(),
        "model": {"spec": state.run.model, "identity": _safe_identity(state)},
        "versions": package_versions(),
        "git": git_commit(session.config.rootpath),
        "tasks": tasks,
        "timings": {"wall_s": round(wall_s, 4)},
        "throughput": throughput(state.results, wall_s),
        "results_file": str(results_path),
    }
    data["judge"] = _judge_info(state, by_task)
    if state.run.baseline:
        data["comparison"] = _compare_with_baseline(state, by_task)
    elif state.baseline_model is not None:
        data["comparison"] = _compare_with_baseline_model(state, by_task)
    else:
        data["comparison"] = None
    data["gates"] = _check_gates(state, data)
    data["not_done"] = [{"nodeid": nodeid, "reason": why} for nodeid, why in sorted(state.not_done.items())]
    data["completeness"] = _completeness(state, tasks)
    if state.run.strict_metrics:
        for name, info in tasks.items():
            if info["missing_metrics"]:
                data["gates"]["failures"].append(
                    {
                        "gate": "strict-metrics",
                        "message": f"{name}: no sample produced {', '.join(info['missing_metrics'])}",
                    }
                )
    write_results(results_path, data)
    return data


def _completeness(state: LmmsSession, tasks: dict[str, Any]) -> dict[str, Any]:
    """Planned against done: a run cut short (Ctrl-C, -x, a dead worker) says so."""
    planned = sum(state.planned.values())
    scored = sum(info["n"] for info in tasks.values())
    failed = sum(info["failed"] for info in tasks.values())
    done = scored + failed
    return {
        "planned": planned,
        "done": done,
        "scored": scored,
        "failed": failed,
        "not_done": len(state.not_done),
        "interrupted": state.interrupted,
        "complete": not state.interrupted and not state.not_done and done >= planned,
    }


def _by_task(results: list[SampleResult]) -> dict[str, list[SampleResult]]:
    """Results per task in one order whatever order they arrived in (xdist workers report
    in any order), so every sum, pairing and bootstrap sees the same sequence."""
    by_task: dict[str, list[SampleResult]] = defaultdict(list)
    for result in results:
        by_task[result.task].append(result)
    for rows in by_task.values():
        rows.sort(key=lambda r: (r.doc_id, r.repeat))
    return dict(by_task)


def _judge_use(results: list[SampleResult]) -> dict[str, int] | None:
    judged = [r for r in results if r.judge_calls]
    if not judged:
        return None
    return {"samples": len(judged), "calls": sum(r.judge_calls for r in judged)}


def _judge_info(state: LmmsSession, by_task: dict[str, list[SampleResult]]) -> dict[str, Any] | None:
    """The judge's model and the exact text of every judge prompt this run asked."""
    runner = state.judge_runner
    if runner is None:
        return None
    from pytest_lmms.scoring.judge import prompt_records

    return {
        "model": runner.spec,
        "identity": state.identity_of("judge", runner),
        "prompts": prompt_records(
            name for results in by_task.values() for r in results for name in r.judge_prompts
        ),
    }


def _stability(results: list[SampleResult], metric: str, top: int = 10) -> dict[str, Any] | None:
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
    summary["metric"] = metric
    summary["highest_internal_variance"] = [
        {"doc_id": doc, "variance": variance, "mean": mean} for doc, variance, mean in spread[:top]
    ]
    return summary


def _compare_with_baseline(state: LmmsSession, by_task: dict[str, list[SampleResult]]) -> dict[str, Any]:
    from pytest_lmms.report import compare_runs, load_run

    assert state.run.baseline is not None
    try:
        baseline = load_run(state.run.baseline)
    except ValueError as exc:
        return {"baseline": str(state.run.baseline), "error": str(exc), "tasks": {}}
    primary = {name: task.primary_metric for name, task in state.tasks.items() if task.primary_metric}
    clustered = {name: task.spec.cluster_key is not None for name, task in state.tasks.items()}
    return {
        "baseline": str(baseline.path),
        "baseline_model": baseline.label,
        "tasks": compare_runs(by_task, baseline.samples, primary, clustered),
    }


def _compare_with_baseline_model(
    state: LmmsSession, by_task: dict[str, list[SampleResult]]
) -> dict[str, Any]:
    from pytest_lmms.report import compare_runs

    model = state.baseline_model
    assert model is not None
    baseline_by_task = _by_task(state.baseline_results)
    primary = {name: task.primary_metric for name, task in state.tasks.items() if task.primary_metric}
    clustered = {name: task.spec.cluster_key is not None for name, task in state.tasks.items()}
    metrics: dict[str, Any] = {}
    for name, results in baseline_by_task.items():
        task = state.tasks.get(name)
        if task is not None:
            metrics[name] = {metric: est.to_json() for metric, est in task.aggregate(results).items()}
    return {
        "baseline": None,
        "baseline_model": model.spec,
        "baseline_identity": state.identity_of("baseline_model", model),
        "baseline_metrics": metrics,
        "baseline_samples": {
            name: str(state.writer.path_for(name, "baseline_samples_")) for name in baseline_by_task
        },
        "tasks": compare_runs(by_task, baseline_by_task, primary, clustered),
    }


def _check_gates(state: LmmsSession, data: dict[str, Any]) -> dict[str, Any]:
    from pytest_lmms.report import FailUnder, GateFailure, check_fail_under, check_regressions

    failures = check_fail_under(data, [FailUnder.parse(spec) for spec in state.run.fail_under])
    comparison = data.get("comparison")
    if state.run.fail_on_regression is not None and comparison is not None:
        if comparison.get("error"):
            failures.append(GateFailure("regression", f"baseline unusable: {comparison['error']}"))
        else:
            higher = {
                name: state.tasks[name].higher_is_better(c["metric"])
                for name, c in comparison["tasks"].items()
                if name in state.tasks
            }
            failures += check_regressions(comparison["tasks"], higher, state.run.fail_on_regression)
    return {
        "fail_under": list(state.run.fail_under),
        "fail_on_regression": state.run.fail_on_regression,
        "failures": [{"gate": f.gate, "message": f.message} for f in failures],
    }


def _safe_identity(state: LmmsSession) -> dict[str, Any] | None:
    return state.identity_of("model", state.model)


def summary_lines(results: dict[str, Any]) -> list[str]:
    from pytest_lmms.report import format_table

    rows = []
    for task, info in results["tasks"].items():
        if not info["metrics"]:
            rows.append(
                {
                    "task": task,
                    "metric": "-",
                    "value": None,
                    "ci_low": None,
                    "ci_high": None,
                    "n": info["n"],
                    "n_clusters": None,
                    "method": "-",
                    "failed": info["failed"],
                }
            )
        for metric, est in info["metrics"].items():
            rows.append(
                {
                    "task": task,
                    "metric": metric,
                    "value": est["value"],
                    "ci_low": est["ci_low"] if est["ci_low"] is not None else math.nan,
                    "ci_high": est["ci_high"] if est["ci_high"] is not None else math.nan,
                    "n": est["n"],
                    "n_clusters": est["n_clusters"],
                    "method": est["method"],
                    "failed": info["failed"],
                }
            )
        for metric in info.get("missing_metrics") or []:
            rows.append(
                {
                    "task": task,
                    "metric": metric,
                    "value": None,
                    "ci_low": None,
                    "ci_high": None,
                    "n": 0,
                    "n_clusters": None,
                    "method": "no sample produced it",
                    "failed": info["failed"],
                }
            )
    lines = format_table(rows)
    total = results["throughput"]
    lines.append("")
    lines.append(
        f"model {results['model']['spec']}: {total['samples']} samples, {total['cached']} from cache, "
        f"{total['model_calls']} model calls, {total['wall_s']:.2f} s"
    )
    lines.append(f"results: {results['results_file']}")
    completeness = results.get("completeness") or {}
    if completeness and not completeness.get("complete", True):
        why = " (interrupted)" if completeness.get("interrupted") else ""
        lines.append(
            f"incomplete run{why}: {completeness['done']} of {completeness['planned']} planned samples done "
            f"({completeness['failed']} failed); the scores cover the samples done only"
        )
    stable = {task: info["stability"] for task, info in results["tasks"].items() if info.get("stability")}
    if stable:
        lines.append("")
        lines.append(
            "stability over repeats (EA expected acc., CA consensus acc., IV internal variance, CR consistency):"
        )
        for task, info in stable.items():
            lines.append(
                f"  {task} ({info['metric']}, k={info['k']}, {info['n_questions']} questions): "
                f"EA {info['expected_accuracy']:.4f}  CA {info['consensus_accuracy']:.4f}  "
                f"IV {info['internal_variance']:.4f}  CR {info['consistency_rate']:.4f}"
            )
    judged = {task: info["judge"] for task, info in results["tasks"].items() if info.get("judge")}
    if judged:
        model = (results.get("judge") or {}).get("model", "the judge")
        lines.append("")
        for task, use in judged.items():
            n = results["tasks"][task]["n"]
            lines.append(
                f"judge {model}: {task}: {use['samples']} of {n} samples needed the judge ({use['calls']} calls)"
            )
    comparison = results.get("comparison")
    if comparison:
        from pytest_lmms.report import format_comparisons

        lines.append("")
        if comparison.get("error"):
            lines.append(f"baseline not compared: {comparison['error']}")
        else:
            lines += format_comparisons(comparison["tasks"], comparison["baseline_model"])
    return lines


def error_lines(results: dict[str, Any]) -> list[str]:
    lines = [
        f"pytest-lmms: {task} not aggregated: {info['error']}"
        for task, info in results["tasks"].items()
        if info.get("error")
    ]
    not_done = results.get("not_done") or []
    if not_done:
        crashed = [entry["nodeid"] for entry in not_done if not entry["reason"].startswith("never run")]
        never_run = [entry["nodeid"] for entry in not_done if entry["reason"].startswith("never run")]
        if crashed:
            lines.append(
                f"pytest-lmms: {len(crashed)} sample(s) not done, their worker died: " + _some(crashed)
            )
        if never_run:
            lines.append(
                f"pytest-lmms: {len(never_run)} sample(s) never run, the run stopped before them: "
                + _some(never_run)
            )
        if (results.get("config") or {}).get("cache_dir") is not None:
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


def gate_lines(results: dict[str, Any]) -> list[str]:
    return [f"pytest-lmms gate failed ({f['gate']}): {f['message']}" for f in results["gates"]["failures"]]
