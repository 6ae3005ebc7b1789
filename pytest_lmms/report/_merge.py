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
from pathlib import Path
from typing import Any

import orjson

from pytest_lmms.types import SampleResult


def merge_runs(runs: Sequence[str | Path], out: str | Path) -> dict[str, Any]:
    from pytest_lmms.report._compare import load_run
    from pytest_lmms.report._results import throughput, write_results
    from pytest_lmms.tasks import load_task

    if len(runs) < 2:
        raise ValueError("merge needs at least two runs")
    saved = [load_run(run) for run in runs]
    first = saved[0]
    model = first.results.get("model", {}).get("spec")
    for other in saved[1:]:
        if other.results.get("model", {}).get("spec") != model:
            raise ValueError(
                f"{other.path}: model {other.results.get('model', {}).get('spec')!r} is not "
                f"{model!r} of {first.path}: these are not shards of one run"
            )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    by_task: dict[str, list[SampleResult]] = {}
    seen: dict[tuple[str, str, int], Path] = {}
    yaml_of: dict[str, str] = {}
    failed: dict[str, int] = {}
    for run in saved:
        for name, info in run.results["tasks"].items():
            if info.get("yaml"):
                yaml_of.setdefault(name, info["yaml"])
            failed[name] = failed.get(name, 0) + int(info.get("failed") or 0)
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
    tasks: dict[str, Any] = {}
    for name in sorted(set(by_task) | set(failed)):
        results = sorted(by_task.get(name, []), key=lambda r: (r.doc_id, r.repeat))
        metrics: dict[str, Any] = {}
        samples_file = None
        if results:
            if name not in yaml_of:
                raise ValueError(f"no run records the YAML of task {name!r}")
            task = load_task(f"{yaml_of[name]}::{name}")
            for metric, estimate in task.aggregate(results).items():
                metrics[metric] = {**estimate.to_json(), "higher_is_better": task.higher_is_better(metric)}
            samples_file = out / f"samples_{name}.jsonl"
            samples_file.write_bytes(b"".join(orjson.dumps(r.to_json()) + b"\n" for r in results))
        walls = [
            float(run.results["tasks"].get(name, {}).get("throughput", {}).get("wall_s") or 0)
            for run in saved
        ]
        tasks[name] = {
            "yaml": yaml_of.get(name),
            "n": len(results),
            "failed": failed.get(name, 0),
            "metrics": metrics,
            "samples_file": str(samples_file) if samples_file else None,
            "throughput": throughput(results, max(walls)),
        }
    all_results = [r for results in by_task.values() for r in results]
    wall = max(float(run.results.get("timings", {}).get("wall_s") or 0) for run in saved)
    config = dict(first.results.get("config") or {})
    config["shard"] = None
    data: dict[str, Any] = {
        "schema_version": first.results.get("schema_version"),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": config,
        "model": first.results.get("model"),
        "versions": first.results.get("versions"),
        "git": first.results.get("git"),
        "merged_from": [str(run.path) for run in saved],
        "tasks": tasks,
        "timings": {"wall_s": wall},
        "throughput": throughput(all_results, wall),
        "comparison": None,
        "gates": {"fail_under": [], "fail_on_regression": None, "failures": []},
        "results_file": str(out / "results.json"),
    }
    write_results(out / "results.json", data)
    return data
