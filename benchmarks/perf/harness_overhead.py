"""Harness overhead against pytest's own floor, measured in one run on this machine.

    python benchmarks/perf/harness_overhead.py [--samples 2000] [--collect 100000]

Prints, each from fresh subprocesses in a temporary folder:
- pytest's floor per trivial parametrized item;
- this harness's per-sample overhead with an instant model (the ``random`` backend),
  response cache on, and its ratio to the floor (target: at most 1.5x);
- the wall time of a fully cached re-run (target: under 3 s for 2,000 samples);
- collection time for N synthetic samples against N trivial parametrized items;
- the import time of ``pytest_lmms`` (target: under 0.3 s).

Per-item costs are differences between a large and a small run, so interpreter start-up
and plugin loading cancel out.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TASK_YAML = """task: synthetic
dataset_path: docs.jsonl
doc_to_text: "Question {{ question }}? Answer with a letter."
doc_to_target: answer
doc_to_choice: options
generation_kwargs:
  max_new_tokens: 4
metric_list:
  - metric: choice_accuracy
"""


def write_task(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "synthetic.yaml").write_text(TASK_YAML)
    with open(folder / "docs.jsonl", "w") as handle:
        for i in range(n):
            doc = {
                "id": str(i),
                "question": f"number {i}",
                "options": ["a", "b", "c", "d"],
                "answer": "ABCD"[i % 4],
            }
            handle.write(json.dumps(doc) + "\n")
    return folder


def write_trivial(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "test_trivial.py"
    path.write_text(
        f"import pytest\n\n@pytest.mark.parametrize('i', range({n}))\ndef test_item(i):\n    pass\n"
    )
    return path


def run(args: list[str], cwd: Path) -> float:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", *args], cwd=cwd, capture_output=True, text=True, env=env
    )
    elapsed = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        sys.exit(
            f"pytest {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return elapsed


# The package, what pytest loads at start-up, and the public API users touch first.
IMPORTS = ("pytest_lmms", "pytest_lmms.plugin", "pytest_lmms.tasks")


def import_time(module: str) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout)


def best(times: list[float]) -> float:
    return min(times)


def per_item(large: float, small: float, n_large: int, n_small: int) -> float:
    return (large - small) / (n_large - n_small)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--collect", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    opts = parser.parse_args()
    n, small = opts.samples, max(opts.samples // 10, 10)
    common = ["-q", "-p", "no:cacheprovider", "-p", "no:randomly"]
    with tempfile.TemporaryDirectory(prefix="lmms-perf-") as tmp:
        root = Path(tmp)
        (root / "pytest.ini").write_text("[pytest]\n")
        trivial_large = write_trivial(root / "trivial_large", n)
        trivial_small = write_trivial(root / "trivial_small", small)
        floor_large = best([run([*common, str(trivial_large)], root) for _ in range(opts.repeats)])
        floor_small = best([run([*common, str(trivial_small)], root) for _ in range(opts.repeats)])
        floor = per_item(floor_large, floor_small, n, small)

        task_large = write_task(root / "task_large", n)
        task_small = write_task(root / "task_small", small)
        harness = ["--model=random:0", "--lmms-output", str(root / "results")]
        fresh_large, fresh_small, cached_large = [], [], []
        for repeat in range(opts.repeats):
            cache_large, cache_small = root / f"cache_large{repeat}", root / f"cache_small{repeat}"
            fresh_large.append(run([*common, *harness, f"--lmms-cache={cache_large}", str(task_large)], root))
            fresh_small.append(run([*common, *harness, f"--lmms-cache={cache_small}", str(task_small)], root))
            cached_large.append(
                run([*common, *harness, f"--lmms-cache={cache_large}", str(task_large)], root)
            )
        sample = per_item(best(fresh_large), best(fresh_small), n, small)

        n_collect = opts.collect
        collect_trivial = write_trivial(root / "collect_trivial", n_collect)
        collect_task = write_task(root / "collect_task", n_collect)
        collect_floor = run([*common, "--collect-only", str(collect_trivial)], root)
        collect_harness = run([*common, "--collect-only", "--model=random:0", str(collect_task)], root)

        imports = {module: [import_time(module) for _ in range(5)] for module in IMPORTS}

    print(f"pytest floor per trivial item        {floor * 1e6:9.1f} us   ({n} items, best of {opts.repeats})")
    print(
        f"harness per sample, instant model    {sample * 1e6:9.1f} us   ratio {sample / floor:5.2f}x  (target <= 1.5x)"
    )
    print(f"fully cached re-run of {n} samples  {best(cached_large):9.2f} s    (target < 3 s)")
    print(f"collect {n_collect} trivial items      {collect_floor:9.2f} s")
    print(
        f"collect {n_collect} samples            {collect_harness:9.2f} s    ratio {collect_harness / collect_floor:5.2f}x"
    )
    for module, times in imports.items():
        print(f"import {module:<29} {statistics.median(times):9.3f} s    (target < 0.3 s)")


if __name__ == "__main__":
    main()
