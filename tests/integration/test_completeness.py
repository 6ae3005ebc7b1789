"""results.json says whether a run is complete; declared metrics never vanish quietly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import SCRIPTED_BACKEND, qa_rows, qa_task_yaml, write_jsonl


def test_ctrl_c_leaves_results_that_say_the_run_was_interrupted(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(SCRIPTED_BACKEND)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    write_jsonl(tmp_path / "qa.jsonl", qa_rows(400))
    (tmp_path / "qa.yaml").write_text(qa_task_yaml("qa", "qa.jsonl"))
    log = tmp_path / "calls.log"
    env = {**os.environ, "SCRIPTED_LOG": str(log), "SCRIPTED_SLEEP": "0.05"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "--model=scripted:m1",
            "--lmms-run-name=cut",
            "-p",
            "no:cacheprovider",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(log.read_text().split() if log.exists() else []) < 40:
        time.sleep(0.05)  # waiting for the run to be under way, not timing anything
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == pytest.ExitCode.INTERRUPTED, output
    data = json.loads((tmp_path / "results" / "cut" / "results.json").read_text())
    completeness = data["completeness"]
    assert completeness["planned"] == 400 and completeness["interrupted"] is True
    assert completeness["complete"] is False
    assert 0 < completeness["done"] < 400 and completeness["done"] == data["tasks"]["qa"]["n"]
    assert data["tasks"]["qa"]["planned"] == 400
    assert f"incomplete run (interrupted): {completeness['done']} of 400 planned samples done" in output


def test_a_complete_run_says_so_with_per_task_wall_times(lmms_project: pytest.Pytester) -> None:
    for name, n in (("qa", 6), ("qb", 3)):
        write_jsonl(lmms_project.path / f"{name}.jsonl", qa_rows(n))
        lmms_project.makefile(".yaml", **{name: qa_task_yaml(name, f"{name}.jsonl")})
    lmms_project.runpytest("--model=scripted:m1", "--lmms-run-name=r").assert_outcomes(passed=9)
    data = json.loads((lmms_project.path / "results/r/results.json").read_text())
    assert data["completeness"] == {
        "planned": 9,
        "done": 9,
        "scored": 9,
        "failed": 0,
        "not_done": 0,
        "interrupted": False,
        "complete": True,
    }
    walls = {task: info["wall_s"] for task, info in data["tasks"].items()}
    # each task's own span, not the run's: together at most the run's wall time
    assert all(0 < wall <= data["timings"]["wall_s"] for wall in walls.values())
    assert sum(walls.values()) <= data["timings"]["wall_s"] + 1e-3
    stopped = lmms_project.runpytest("--model=scripted:m1", "--lmms-run-name=x", "-x", "--no-lmms-cache")
    assert json.loads((lmms_project.path / "results/x/results.json").read_text())["completeness"]["complete"]
    assert stopped.ret == 0


MISSING_METRIC_TASK = """\
task: qa
dataset_path: qa.jsonl
doc_to_text: "Question {{ question }}: reply {{ reply }}"
doc_to_target: answer
process_results: !function score.process_results
metric_list:
  - metric: exact_match
  - metric: l2_reasoning
"""


def test_a_declared_metric_no_sample_produced_is_shown_and_can_fail_the_run(
    lmms_project: pytest.Pytester,
) -> None:
    write_jsonl(lmms_project.path / "qa.jsonl", qa_rows(4))
    lmms_project.makefile(".yaml", qa=MISSING_METRIC_TASK)
    lmms_project.makepyfile(
        score="def process_results(doc, response):\n    return {'exact_match': float(response == doc['answer'])}\n"
    )
    result = lmms_project.runpytest("--model=scripted:m1", "--lmms-run-name=r")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["qa*l2_reasoning*-*0*no sample produced it*"])
    data = json.loads((lmms_project.path / "results/r/results.json").read_text())
    assert data["tasks"]["qa"]["missing_metrics"] == ["l2_reasoning"]
    assert set(data["tasks"]["qa"]["metrics"]) == {"exact_match"}
    strict = lmms_project.runpytest("--model=scripted:m1", "--lmms-strict-metrics")
    assert strict.ret == 1
    strict.stdout.fnmatch_lines(["*gate failed (strict-metrics): qa: no sample produced l2_reasoning*"])
