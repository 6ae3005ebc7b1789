"""Scaling over xdist workers, measured in one run on this machine.

    python benchmarks/perf/xdist_scaling.py [--samples 800] [--cost-ms 25] [--cached 2000]

Prints, each from fresh pytest subprocesses in a temporary folder:
- a CPU-bound stand-in engine (a backend registered in the folder's conftest that burns a
  fixed CPU time per request) under -n 0 and -n 2: wall time of the session, time of the
  sample phase (first sample started to last sample done), and the speed-up (target: at
  least 1.7x on 2 cores);
- a fully cached re-run of 2,000 samples under -n 0 and -n 2;
- for pytest-lmms's scheduler and xdist's ``--dist load``: the share of samples whose
  prefix group (here: the questions on one image, spread over the file as MMBench's
  rotations are) was split across workers (target 0), the tail (time between the first
  and the last worker finishing its last sample).

The machine's other load shows in every number: run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

CONFTEST = '''
import os
import time

import pytest

from pytest_lmms.models import register_model
from pytest_lmms.types import Response


@register_model("burn")
class Burn:
    """A CPU-bound stand-in engine: a fixed CPU time per request (time on this thread, so
    other load on the machine stretches it as it would a real engine's)."""

    name = "burn"

    def __init__(self, model_id="", cost_ms="25", batch_size="8"):
        self.model_id = model_id
        self.cost_s = float(cost_ms) / 1000
        self.max_batch_size = int(batch_size)

    def identity(self):
        return {"backend": "burn", "model": self.model_id}

    def generate(self, requests):
        out = []
        for request in requests:
            start = time.thread_time()
            while time.thread_time() - start < self.cost_s:
                pass
            out.append(Response(text="A", output_tokens=1))
        return out

    def close(self):
        pass


def pytest_runtest_logreport(report):
    # on a worker (or a single process): which process ran a sample, and when it ended
    log = os.environ.get("SCALING_LOG")
    if log and report.when == "call" and not hasattr(report, "node"):
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        with open(log, "a") as handle:
            handle.write(f"{worker} {report.nodeid} {report.start:.6f} {report.stop:.6f}\\n")
'''

TASK_YAML = """task: scaling
dataset_path: docs.jsonl
doc_to_text: "Image {{ image }}, question {{ question }}? Answer with a letter."
doc_to_target: answer
doc_to_choice: options
cluster_key: image
generation_kwargs:
  max_new_tokens: 4
metric_list:
  - metric: choice_accuracy
"""

QUESTIONS_PER_IMAGE = 4


def write_suite(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "conftest.py").write_text(CONFTEST)
    (folder / "pytest.ini").write_text("[pytest]\n")
    (folder / "scaling.yaml").write_text(TASK_YAML)
    images = max(1, n // QUESTIONS_PER_IMAGE)
    with open(folder / "docs.jsonl", "w") as handle:
        for i in range(n):
            # doc i asks about image i mod images: one image's questions are far apart
            doc = {
                "id": str(i),
                "image": f"img{i % images}",
                "question": f"number {i}",
                "options": ["a", "b", "c", "d"],
                "answer": "ABCD"[i % 4],
            }
            handle.write(json.dumps(doc) + "\n")
    return folder


def run(folder: Path, args: list[str], log: Path | None = None) -> float:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    env.pop("SCALING_LOG", None)
    if log is not None:
        log.unlink(missing_ok=True)
        env["SCALING_LOG"] = str(log)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "xdist", *args]
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=folder, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(
            f"pytest {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return elapsed


def read_log(log: Path) -> list[tuple[str, str, float, float]]:
    rows = []
    for line in log.read_text().splitlines():
        worker, nodeid, start, stop = line.split()
        rows.append((worker, nodeid, float(start), float(stop)))
    return rows


def phase_s(rows: list[tuple[str, str, float, float]]) -> float:
    return max(r[3] for r in rows) - min(r[2] for r in rows)


def split_share(rows: list[tuple[str, str, float, float]], n: int) -> float:
    """The share of samples whose image's questions ran on more than one worker."""
    images = max(1, n // QUESTIONS_PER_IMAGE)
    workers: dict[int, set[str]] = defaultdict(set)
    count: dict[int, int] = defaultdict(int)
    for worker, nodeid, _, _ in rows:
        image = int(nodeid.rpartition("[")[2].rstrip("]")) % images
        workers[image].add(worker)
        count[image] += 1
    split = sum(count[image] for image, by in workers.items() if len(by) > 1)
    return split / max(1, len(rows))


def tail_s(rows: list[tuple[str, str, float, float]]) -> float:
    """The time between the first and the last worker finishing its last sample."""
    last: dict[str, float] = {}
    for worker, _, _, stop in rows:
        last[worker] = max(last.get(worker, 0.0), stop)
    return max(last.values()) - min(last.values()) if len(last) > 1 else 0.0


def cpu_bound(root: Path, n: int, cost_ms: float) -> None:
    folder = write_suite(root / "cpu", n)
    model = f"--model=burn:m --model-args=cost_ms={cost_ms}".split()
    log = root / "cpu.log"
    print(f"CPU-bound stand-in engine: {n} samples x {cost_ms:g} ms CPU ({n * cost_ms / 1000:.1f} s of work)")
    results: dict[str, tuple[float, float, list[tuple[str, str, float, float]]]] = {}
    for label, extra in (
        ("-n 0", ["-n", "0"]),
        ("-n 2", ["-n", "2"]),
        ("-n 2 --dist load", ["-n", "2", "--dist", "load"]),
    ):
        cache = root / f"cache-{len(results)}"  # nothing cached: every sample burns
        wall = run(folder, [*model, f"--lmms-cache={cache}", "--lmms-output=results", *extra], log)
        rows = read_log(log)
        results[label] = (wall, phase_s(rows), rows)
        assert len(rows) == n, f"{label}: {len(rows)} samples ran, expected {n}"
    wall0, phase0, _ = results["-n 0"]
    for label, (wall, phase, rows) in results.items():
        line = f"  {label:<17} wall {wall:6.2f} s ({wall0 / wall:4.2f}x)  samples phase {phase:6.2f} s ({phase0 / phase:4.2f}x)"
        if label != "-n 0":
            line += f"  split groups {split_share(rows, n):6.1%}  tail {tail_s(rows):5.2f} s"
        print(line)
    print("  (target: -n 2 at least 1.7x faster on 2 cores; split groups 0%)")


def cached_rerun(root: Path, n: int) -> None:
    folder = write_suite(root / "cached", n)
    args = [
        "--model=burn:m",
        "--model-args=cost_ms=0",
        f"--lmms-cache={root / 'cache-cached'}",
        "--lmms-output=results",
    ]
    run(folder, [*args, "-n", "0"])  # fills the cache
    print(f"fully cached re-run of {n} samples (best of 2):")
    for workers in ("0", "2"):
        best = min(run(folder, [*args, "-n", workers]) for _ in range(2))
        print(f"  -n {workers}: {best:6.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=800, help="samples of the CPU-bound runs")
    parser.add_argument(
        "--cost-ms", type=float, default=25.0, help="CPU time per sample of the stand-in engine"
    )
    parser.add_argument("--cached", type=int, default=2000, help="samples of the cached re-run")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start")
    with tempfile.TemporaryDirectory(prefix="xdist-scaling-") as tmp:
        root = Path(tmp)
        cpu_bound(root, args.samples, args.cost_ms)
        cached_rerun(root, args.cached)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
