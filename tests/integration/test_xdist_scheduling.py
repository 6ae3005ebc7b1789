"""Work distribution under -n: the samples of one cluster (questions on one image or video)
run on one worker, every sample runs once, results equal -n 0, node ids (and so --lf) are
unchanged, and an explicit --dist or a collection of plain tests keeps xdist's own modes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from tests.helpers import qa_rows, qa_task_yaml, write_jsonl
from tests.integration.test_xdist_equivalence import assert_same_in_every_layout, run_layout

N_DOCS = 60
N_CLUSTERS = 12


@pytest.fixture
def worker_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    log = tmp_path / "workers.log"
    monkeypatch.setenv("SCRIPTED_WORKER_LOG", str(log))
    return log


def write_clustered(pytester: pytest.Pytester, fail: tuple[int, ...] = ()) -> None:
    """A clustered task whose clusters are spread over the file (doc i is in cluster
    i mod 12), as MMBench's rotations are: neighbouring node ids never share a cluster, so
    only the clusters the workers ship keep a cluster on one worker."""
    rows = qa_rows(N_DOCS, wrong=[2, 13, 29], fail=list(fail))
    for row in rows:
        row["group"] = f"image{int(row['id']) % N_CLUSTERS}"
    write_jsonl(pytester.path / "qa.jsonl", rows)
    pytester.makefile(".yaml", qa=qa_task_yaml("qa", "qa.jsonl", "cluster_key: group\n"))


def answered_by(log: Path) -> dict[str, list[str]]:
    """doc id -> the workers that answered it."""
    workers: dict[str, list[str]] = defaultdict(list)
    for line in log.read_text().splitlines():
        worker, doc_id = line.split()
        workers[doc_id].append(worker)
    return workers


def workers_per_cluster(answered: dict[str, list[str]]) -> dict[str, set[str]]:
    clusters: dict[str, set[str]] = defaultdict(set)
    for doc_id, workers in answered.items():
        clusters[f"image{int(doc_id) % N_CLUSTERS}"].update(workers)
    return clusters


@pytest.mark.parametrize("workers", [2, 3])
def test_every_cluster_runs_on_one_worker_and_results_equal_one_process(
    lmms_project: pytest.Pytester, worker_log: Path, workers: int
) -> None:
    write_clustered(lmms_project)
    parallel = run_layout(lmms_project, workers)
    answered = answered_by(worker_log)
    assert sorted(answered, key=int) == [str(i) for i in range(N_DOCS)]
    assert all(len(by) == 1 for by in answered.values())  # every sample asked once
    clusters = workers_per_cluster(answered)
    assert len(clusters) == N_CLUSTERS
    assert {cluster: len(by) for cluster, by in clusters.items() if len(by) > 1} == {}
    # and the work was shared: every worker answered some clusters
    assert len({w for by in answered.values() for w in by}) == workers

    worker_log.write_text("")
    single = run_layout(lmms_project, 0)
    assert_same_in_every_layout([single, parallel])
    assert parallel.results["tasks"]["qa"]["metrics"]["exact_match"]["n_clusters"] == N_CLUSTERS


def test_repeats_of_a_document_run_on_one_worker(lmms_project: pytest.Pytester, worker_log: Path) -> None:
    # no cluster_key: a document's repeats share the whole prompt, so they are the group
    write_jsonl(lmms_project.path / "qa.jsonl", qa_rows(24))
    lmms_project.makefile(".yaml", qa=qa_task_yaml("qa", "qa.jsonl"))
    outcome = run_layout(lmms_project, 2, "--lmms-repeats=3")
    assert outcome.outcomes == {"passed": 72}
    answered = answered_by(worker_log)
    assert all(len(by) == 3 and len(set(by)) == 1 for by in answered.values())
    assert len({w for by in answered.values() for w in by}) == 2


def test_last_failed_still_selects_the_failed_samples_under_2_workers(
    lmms_project: pytest.Pytester, worker_log: Path
) -> None:
    write_clustered(lmms_project, fail=(7, 31))
    first = lmms_project.runpytest("--model=scripted:m", "-p", "xdist", "-n", "2", "-rf")
    assert first.parseoutcomes() == {"passed": N_DOCS - 2 - 3, "failed": 2, "wrong": 3}
    # node ids are the ones -n 0 prints: no @group suffix
    failed = sorted(line.split()[1] for line in first.outlines if line.startswith("FAILED "))
    assert failed == ["qa.yaml::qa[31]", "qa.yaml::qa[7]"]

    write_clustered(lmms_project)  # the server is fixed
    worker_log.write_text("")
    again = lmms_project.runpytest("--model=scripted:m", "-p", "xdist", "-n", "2", "--lf", "-v")
    again.assert_outcomes(passed=2)
    assert sorted(answered_by(worker_log)) == ["31", "7"]  # only the failed samples ran
    assert "scheduling tests via GroupScheduling" in again.stdout.str()


def test_pytest_lmms_schedules_samples_unless_a_dist_mode_is_asked(lmms_project: pytest.Pytester) -> None:
    write_clustered(lmms_project)
    ours = lmms_project.runpytest("--model=scripted:m", "-p", "xdist", "-n", "2", "-v")
    assert "scheduling tests via GroupScheduling" in ours.stdout.str()
    theirs = lmms_project.runpytest("--model=scripted:m", "-p", "xdist", "-n", "2", "-v", "--dist=load")
    assert "scheduling tests via LoadScheduling" in theirs.stdout.str()
    assert ours.parseoutcomes() == theirs.parseoutcomes() == {"passed": N_DOCS - 3, "wrong": 3}


def test_plain_tests_under_n_run_as_xdist_would(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_plain="import pytest\n\n@pytest.mark.parametrize('i', range(30))\ndef test_x(i): pass\n"
    )
    result = pytester.runpytest("-p", "xdist", "-n", "2")
    result.assert_outcomes(passed=30)


def test_without_the_workers_clusters_groups_fall_back_to_documents(
    lmms_project: pytest.Pytester, worker_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the clusters come in a folder the controller names; a worker that cannot write there
    # (another host) still runs everything once, grouped by document
    lmms_project.makeconftest(
        (lmms_project.path / "conftest.py").read_text()
        + "\n\ndef pytest_configure(config):\n"
        + "    wi = getattr(config, 'workerinput', None)\n"
        + "    if wi is not None:\n"
        + "        wi['lmms_groups_dir'] = '/nonexistent/pytest-lmms-groups'\n"
    )
    write_clustered(lmms_project)
    outcome = run_layout(lmms_project, 2)
    answered = answered_by(worker_log)
    assert sorted(answered, key=int) == [str(i) for i in range(N_DOCS)]
    assert all(len(by) == 1 for by in answered.values())
    assert outcome.results["tasks"]["qa"]["n"] == N_DOCS


SLURM_SCRIPT = Path(__file__).parents[2] / "benchmarks" / "examples" / "slurm_array.sh"
OFFLINE = Path(__file__).parents[2] / "benchmarks" / "offline"


def test_the_slurm_array_example_runs_its_shards_and_merges_them_into_the_single_run(tmp_path: Path) -> None:
    shutil.copytree(OFFLINE, tmp_path / "offline")
    env = {
        **os.environ,
        "RUN": "offline-eval",
        "MODEL": "random:0",
        "TASKS": "offline",
        "SUITE": "offline",
        "GPUS_PER_WORKER": "0",
        "SLURM_ARRAY_TASK_COUNT": "2",
        "EXTRA": "-p xdist",
        # the script's `python` is this interpreter (with pytest-lmms), whatever PATH says
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }

    def script(*args: str, **more: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["bash", str(SLURM_SCRIPT), *args],
            cwd=tmp_path,
            env={**env, **more},
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        return done

    # the array's two tasks (one of them with two xdist workers), then the merge job
    script(SLURM_ARRAY_TASK_ID="0", WORKERS="2")
    script(SLURM_ARRAY_TASK_ID="1", WORKERS="0")
    merged_out = script("merge").stdout
    assert "responses added" in merged_out
    whole = subprocess.run(
        [sys.executable, "-m", "pytest", "offline", "--model=random:0", "--tasks=offline", "-p", "xdist", "-q",
         "--lmms-output=results", "--lmms-run-name=whole", "--lmms-cache=whole-cache"],
        cwd=tmp_path, capture_output=True, text=True,
    )  # fmt: skip
    assert whole.returncode == 0, whole.stdout[-2000:]
    merged = json.loads((tmp_path / "results" / "offline-eval" / "results.json").read_text())
    single = json.loads((tmp_path / "results" / "whole" / "results.json").read_text())
    assert set(merged["tasks"]) == set(single["tasks"]) == {"motion", "shapes_color", "shapes_count"}
    for name, task in single["tasks"].items():
        assert task["metrics"], name
        for metric, estimate in task["metrics"].items():
            for key in ("value", "ci_low", "ci_high", "n", "n_clusters"):
                assert merged["tasks"][name]["metrics"][metric][key] == pytest.approx(estimate[key]), (
                    name,
                    metric,
                )
    assert len(merged["merged_from"]) == 2


def test_each_worker_gets_chunks_its_engine_batches_together(
    lmms_project: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches = tmp_path / "batches.log"
    monkeypatch.setenv("SCRIPTED_BATCHES", str(batches))
    rows = qa_rows(200)
    for row in rows:
        row["group"] = f"image{int(row['id']) % 50}"
    write_jsonl(lmms_project.path / "qa.jsonl", rows)
    lmms_project.makefile(".yaml", qa=qa_task_yaml("qa", "qa.jsonl", "cluster_key: group\n"))
    run_layout(lmms_project, 2, "--model-args=batch_size=16")
    sizes = [int(size) for size in batches.read_text().split()]
    assert sum(sizes) == 200
    # chunks of whole clusters, large first and planned as they arrive: batches stay full
    # (one sample at a time, as xdist's load mode ends, would average far below half)
    assert sum(sizes) / len(sizes) >= 8, sizes
