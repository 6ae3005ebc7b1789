"""A run killed with SIGKILL resumes from the response cache (real pytest processes).

Run 1 is killed by the scripted backend itself (``SCRIPTED_CRASH_AFTER``) or while a batch
sits in the write-ahead log but not yet in SQLite; run 2 on the same cache must ask the
model exactly the documents run 1 did not answer, and end with the same results as an
uninterrupted run 3 in a fresh cache.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.helpers import SCRIPTED_BACKEND, model_calls, qa_rows, qa_task_yaml, write_jsonl

N_DOCS = 40
WRONG = (2, 9, 17, 25, 31, 38)
ALL_IDS = {str(i) for i in range(N_DOCS)}

# With $CRASH_IN_SQLITE_WRITE=N the process kills itself inside the N-th SQLite write of
# the cache: that batch is already fsynced to the write-ahead log, but not in SQLite.
CRASH_IN_SQLITE_WRITE = """

from pytest_lmms.cache import ResponseCache

_sqlite_writes = [0]
_original_write_sqlite = ResponseCache._write_sqlite


def _write_sqlite_or_die(self, rows):
    _sqlite_writes[0] += 1
    crash_at = int(os.environ.get("CRASH_IN_SQLITE_WRITE", "0"))
    if crash_at and _sqlite_writes[0] >= crash_at:
        os.kill(os.getpid(), signal.SIGKILL)
    _original_write_sqlite(self, rows)


ResponseCache._write_sqlite = _write_sqlite_or_die
"""


def make_project(root: Path) -> Path:
    root.mkdir()
    (root / "conftest.py").write_text(SCRIPTED_BACKEND + CRASH_IN_SQLITE_WRITE)
    (root / "pytest.ini").write_text("[pytest]\n")
    write_jsonl(root / "qa.jsonl", qa_rows(N_DOCS, wrong=WRONG))
    (root / "qa.yaml").write_text(qa_task_yaml("qa", "qa.jsonl"))
    return root


def run(root: Path, cache: Path, name: str, log: Path, **crash: int) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCRIPTED_", "CRASH_"))}
    env["SCRIPTED_LOG"] = str(log)
    env.update({key.upper(): str(value) for key, value in crash.items()})
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-q",
        "--model=scripted:m",
        "--model-args",
        "batch_size=4",
        f"--lmms-cache={cache}",
        f"--lmms-output={root / 'results'}",
        f"--lmms-run-name={name}",
    ]
    return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=120)


def explain(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


def results(root: Path, name: str) -> dict[str, Any]:
    return json.loads((root / "results" / name / "results.json").read_text())


def samples(root: Path, name: str) -> list[dict[str, Any]]:
    path = root / "results" / name / "samples_qa.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def outcome(root: Path, name: str) -> tuple[dict[str, tuple], set[tuple]]:
    """What must not depend on the run having been interrupted: metrics and scored samples."""
    metrics = {
        metric: (est["value"], est["ci_low"], est["ci_high"], est["n"])
        for metric, est in results(root, name)["tasks"]["qa"]["metrics"].items()
    }
    rows = {
        (s["doc_id"], json.dumps(s["scores"], sort_keys=True), s["response"]) for s in samples(root, name)
    }
    return metrics, rows


def sqlite_rows(cache: Path) -> int:
    with sqlite3.connect(cache / "responses.sqlite") as conn:
        (count,) = conn.execute("SELECT COUNT(*) FROM responses").fetchone()
    conn.close()
    return int(count)


def assert_resumed(root: Path, name: str, answered_before: list[str], log: Path) -> None:
    """Run ``name`` asked the model exactly what the killed run had not answered."""
    after = model_calls(log)
    assert len(after) == len(set(after)), "a document was asked twice in the resumed run"
    assert not set(answered_before) & set(after), "a response computed before the kill was computed again"
    assert set(after) == ALL_IDS - set(answered_before)
    data = results(root, name)
    assert data["tasks"]["qa"]["n"] == N_DOCS and data["tasks"]["qa"]["failed"] == 0
    assert data["throughput"]["cached"] == len(answered_before)
    assert data["throughput"]["model_calls"] == N_DOCS - len(answered_before)


def test_killed_run_resumes_and_ends_like_an_uninterrupted_run(tmp_path: Path) -> None:
    root = make_project(tmp_path / "project")
    cache = tmp_path / "cache"
    log1, log2, log3 = (tmp_path / f"calls{i}.log" for i in (1, 2, 3))

    killed = run(root, cache, "killed", log1, scripted_crash_after=16)
    assert killed.returncode == -9, explain(killed)
    before = model_calls(log1)
    # four batches of four were answered, then the fifth generate call killed the process
    assert len(before) == len(set(before)) == 16
    assert set(before) <= ALL_IDS
    # samples are written as they are scored: whatever the killed run wrote is whole and answered
    assert {s["doc_id"] for s in samples(root, "killed")} <= set(before)
    assert not (root / "results" / "killed" / "results.json").exists()

    resumed = run(root, cache, "resumed", log2)
    assert resumed.returncode == 0, explain(resumed)
    assert_resumed(root, "resumed", before, log2)

    clean = run(root, tmp_path / "fresh-cache", "clean", log3)
    assert clean.returncode == 0, explain(clean)
    assert sorted(model_calls(log3)) == sorted(ALL_IDS)

    assert outcome(root, "resumed") == outcome(root, "clean")
    metrics, rows = outcome(root, "clean")
    assert metrics["exact_match"][0] == (N_DOCS - len(WRONG)) / N_DOCS
    assert metrics["exact_match"][1] < metrics["exact_match"][0] < metrics["exact_match"][2]
    assert metrics["exact_match"][3] == N_DOCS
    assert {doc_id for doc_id, scores, _ in rows if json.loads(scores)["exact_match"] == 0} == {
        str(i) for i in WRONG
    }
    # both runs passed every sample, wrong answers included
    for proc in (resumed, clean):
        assert f"{N_DOCS - len(WRONG)} passed, {len(WRONG)} wrong" in proc.stdout


def test_run_killed_with_a_logged_batch_not_yet_in_sqlite_replays_it(tmp_path: Path) -> None:
    root = make_project(tmp_path / "project")
    cache = tmp_path / "cache"
    log1, log2 = tmp_path / "calls1.log", tmp_path / "calls2.log"

    killed = run(root, cache, "killed", log1, crash_in_sqlite_write=3)
    assert killed.returncode == -9, explain(killed)
    before = model_calls(log1)
    assert len(before) == len(set(before)) == 12
    # the third batch was fsynced to the write-ahead log, then the process died before SQLite
    assert sqlite_rows(cache) == 8
    (orphan,) = (cache / "wal").glob("*.jsonl")
    assert len(orphan.read_bytes().splitlines()) == 12

    resumed = run(root, cache, "resumed", log2)
    assert resumed.returncode == 0, explain(resumed)
    assert_resumed(root, "resumed", before, log2)
    assert sqlite_rows(cache) == N_DOCS
    assert not list((cache / "wal").glob("*.jsonl")), "a replayed or closed log was left behind"
