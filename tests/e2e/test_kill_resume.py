"""kill -9 halfway through a run, then a rerun: nothing computed before the kill is computed
again, and the final results equal those of an uninterrupted run (real processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import SCRIPTED_BACKEND, model_calls, qa_rows, qa_task_yaml, write_jsonl


def project(root: Path) -> Path:
    root.mkdir()
    (root / "conftest.py").write_text(SCRIPTED_BACKEND)
    (root / "pytest.ini").write_text("[pytest]\n")
    write_jsonl(root / "qa.jsonl", qa_rows(40, wrong=[3, 7, 11, 20, 33], cluster_size=4))
    (root / "qa.yaml").write_text(qa_task_yaml("qa", "qa.jsonl", "cluster_key: group\n"))
    return root


def run(
    root: Path, cache: Path, name: str, log: Path, crash_after: int = 0
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SCRIPTED_LOG": str(log)}
    env.pop("SCRIPTED_CRASH_AFTER", None)
    if crash_after:
        env["SCRIPTED_CRASH_AFTER"] = str(crash_after)
    args = [
        "--model=scripted:m",
        "--model-args=batch_size=4",
        f"--lmms-cache={cache}",
        "--lmms-output=results",
    ]
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args, f"--lmms-run-name={name}"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def outcome(root: Path, name: str) -> tuple[dict, list[tuple]]:
    data = json.loads((root / "results" / name / "results.json").read_text())
    samples = [
        json.loads(line) for line in (root / "results" / name / "samples_qa.jsonl").read_text().splitlines()
    ]
    rows = sorted((s["doc_id"], s["response"], json.dumps(s["scores"], sort_keys=True)) for s in samples)
    return data["tasks"]["qa"]["metrics"], rows


def test_a_killed_run_resumes_without_recomputing_and_ends_like_an_uninterrupted_one(tmp_path: Path) -> None:
    root = project(tmp_path / "proj")
    cache = tmp_path / "cache"
    first_log, second_log, clean_log = tmp_path / "first.log", tmp_path / "second.log", tmp_path / "clean.log"

    killed = run(root, cache, "killed", first_log, crash_after=16)
    assert killed.returncode == -9, killed.stdout[-2000:]
    before_kill = model_calls(first_log)
    assert len(before_kill) == 16  # four batches of four were answered, then the process died

    resumed = run(root, cache, "resumed", second_log)
    assert resumed.returncode == 0, resumed.stdout[-2000:]
    after = model_calls(second_log)
    assert not set(before_kill) & set(after), "a response computed before the kill was computed again"
    assert sorted(before_kill + after, key=int) == [str(i) for i in range(40)]

    clean = run(root, tmp_path / "fresh-cache", "clean", clean_log)
    assert clean.returncode == 0
    assert outcome(root, "resumed") == outcome(root, "clean")
