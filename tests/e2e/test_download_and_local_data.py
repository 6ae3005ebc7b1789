"""`pytest-lmms download` on a machine with the hub, `--lmms-data` on one without.

The hub is stood in for by a dataset repository on disk that `datasets.load_dataset` reads
by the same id and call a run makes ("standin/qa" resolves to the folder of that name in
the working directory); the machine without it is another working directory.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import SCRIPTED_BACKEND, qa_rows, write_jsonl

TASK_YAML = """\
task: standin_qa
dataset_path: standin/qa
dataset_kwargs:
  revision: 0123abcd
test_split: test
doc_to_text: "Question {{ question }}: reply {{ reply }}"
doc_to_target: answer
generation_kwargs:
  max_new_tokens: 8
metric_list:
  - metric: exact_match
"""


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_lmms.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def machines(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(online machine's folder, offline machine's folder, the tasks folder both use)."""
    online, offline, tasks = tmp_path / "online", tmp_path / "offline", tmp_path / "tasks"
    write_jsonl(online / "standin" / "qa" / "data" / "test.jsonl", qa_rows(5, wrong=[3]))
    tasks.mkdir()
    (tasks / "standin.yaml").write_text(TASK_YAML)
    (tasks / "conftest.py").write_text(SCRIPTED_BACKEND)
    offline.mkdir()
    return online, offline, tasks


def test_download_then_run_offline_from_the_local_copy(machines: tuple[Path, Path, Path]) -> None:
    online, offline, tasks = machines
    copies = online / "copies"
    done = cli("download", "standin_qa", "--out", str(copies), "--tasks-dir", str(tasks), cwd=online)
    assert done.returncode == 0, done.stderr
    copy = copies / "standin__qa" / "default" / "0123abcd" / "test"
    assert f"standin_qa: 5 rows -> {copy}" in done.stdout
    meta = json.loads((copy / "pytest-lmms.json").read_text())
    assert meta["revision"] == "0123abcd" and meta["rows"] == 5 and meta["dataset_path"] == "standin/qa"
    # the same YAML, no edit, on the machine without the dataset
    moved = offline / "copies"
    copies.rename(moved)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(tasks),
            "--model=scripted:m1",
            f"--lmms-data={moved}",
            "-p",
            "no:cacheprovider",
        ],
        cwd=offline,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "4 passed, 1 wrong" in run.stdout
    (results_file,) = offline.glob("results/*/results.json")
    results = json.loads(results_file.read_text())
    assert results["tasks"]["standin_qa"]["metrics"]["exact_match"]["value"] == pytest.approx(0.8)
    assert results["config"]["data_dir"] == str(moved)
    # `pytest-lmms tasks` knows the hub split's size from the local copy (else "?")
    for args in (["--data", str(moved)], []):
        listed = cli("tasks", str(tasks), *args, cwd=offline)
        (row,) = [line.split() for line in listed.stdout.splitlines() if line.startswith("standin_qa")]
        assert row[1:5] == ["-", "standin/qa", "test", "5" if args else "?"], listed.stdout


def test_a_dataset_that_cannot_be_reached_names_the_download_command(
    machines: tuple[Path, Path, Path],
) -> None:
    _, offline, tasks = machines
    run = subprocess.run(
        [sys.executable, "-m", "pytest", str(tasks), "--model=scripted:m1", "-p", "no:cacheprovider"],
        cwd=offline,
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"},
    )
    assert run.returncode == 1
    assert "pytest-lmms download standin_qa --out DIR" in run.stdout, run.stdout
    # with --lmms-data but no copy of this revision in it: the folder looked in and the command
    empty = offline / "empty"
    empty.mkdir()
    run = subprocess.run(
        [sys.executable, "-m", "pytest", str(tasks), "--model=scripted:m1", f"--lmms-data={empty}"],
        cwd=offline,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 1
    assert f"no local copy in --lmms-data {empty}" in run.stdout
    assert f"pytest-lmms download standin_qa --out {empty}" in run.stdout
