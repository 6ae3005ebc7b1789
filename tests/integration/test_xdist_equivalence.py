"""One result whatever the process layout: `-n 0`, `-n 2` and `-n 3` print the same table,
write the same results.json task blocks and give the same exit status; and a worker killed
mid-run loses nothing: its samples are named, and a rerun on the same cache computes only
what was missing (an answer is in the cache before its sample is reported)."""

from __future__ import annotations

import json
import re
import shutil
import textwrap
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# torch before any in-process session: a session that imports it (a video decoded with
# torchcodec) has it removed from sys.modules afterwards, and a second import crashes
import torch  # noqa: F401, I001

# Imported before any in-process session: one that imported it first would take it (and the
# judge prompts registered in it) away from sys.modules when it ends.
import pytest_lmms.scoring.judge  # noqa: F401
from pytest_lmms.cache import ResponseCache
from pytest_lmms.models._engine import Engine
from pytest_lmms.types import Request, Response
from tests.helpers import SCRIPTED_BACKEND, model_calls, qa_rows, qa_task_yaml, write_jsonl
from tests.integration.test_judge import UTILS as JUDGE_UTILS
from tests.integration.test_judge import YAML as JUDGE_YAML
from tests.unit.test_engine import IDENTITY, Recording, entries

OFFLINE = Path(__file__).parents[2] / "benchmarks" / "offline"
# Fields that measure time or speed, which no two runs share.
TIMING_FIELDS = ("throughput", "timings", "wall_s")


@dataclass
class Outcome:
    """What a user reads of one run: exit status, outcome counts, summary, results.json."""

    ret: int
    outcomes: dict[str, int]
    summary: list[str]
    results: dict[str, Any]


def run_layout(
    pytester: pytest.Pytester,
    workers: int,
    *args: str,
    model: str = "scripted:m",
    name: str = "",
    cache: str = "",
) -> Outcome:
    name = name or f"n{workers}"
    result = pytester.runpytest(
        f"--model={model}",
        "--lmms-output=results",
        f"--lmms-run-name={name}",
        # one cache per layout: each run computes everything, so "from cache" counts agree
        f"--lmms-cache={cache or f'cache-{name}'}",
        "-p",
        "xdist",
        "-n",
        str(workers),
        *args,
    )
    data = json.loads((pytester.path / "results" / name / "results.json").read_text())
    return Outcome(
        result.ret, result.parseoutcomes(), _summary(result.outlines, name), _normalized(data, name)
    )


def _summary(lines: list[str], run_name: str) -> list[str]:
    """The pytest-lmms section of the terminal output, without times and the run folder."""
    start = next(i for i, line in enumerate(lines) if "pytest-lmms results" in line)
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("="))
    return [re.sub(r"\d+\.\d+ s\b", "T s", line).replace(run_name, "RUN") for line in lines[start:end]]


def _normalized(data: dict[str, Any], run_name: str) -> dict[str, Any]:
    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in TIMING_FIELDS}
        if isinstance(value, list):
            return [strip(v) for v in value]
        if isinstance(value, str):
            return value.replace(f"/{run_name}/", "/RUN/")
        return value

    keys = ("tasks", "comparison", "gates", "judge", "model", "config", "not_done")
    return {key: strip(data.get(key)) for key in keys}


def assert_same_in_every_layout(outcomes: list[Outcome]) -> Outcome:
    first, *others = outcomes
    for other in others:
        assert other.results["tasks"] == first.results["tasks"]
        assert other.results == {**first.results, "config": other.results["config"]}
        assert other.summary == first.summary
        assert (other.ret, other.outcomes) == (first.ret, first.outcomes)
    # the run config differs only by the run name and cache folder the layouts were given
    ignore = ("run_name", "cache_dir")
    configs = [{k: v for k, v in o.results["config"].items() if k not in ignore} for o in outcomes]
    assert all(config == configs[0] for config in configs)
    return first


def scored_metrics(outcome: Outcome, task: str) -> dict[str, Any]:
    metrics = outcome.results["tasks"][task]["metrics"]
    assert metrics, f"{task} has no score"
    return metrics


def write_qa(pytester: pytest.Pytester, name: str = "qa", n: int = 12, extra: str = "", **rows: Any) -> None:
    write_jsonl(pytester.path / f"{name}.jsonl", qa_rows(n, **rows))
    pytester.makefile(".yaml", **{name: qa_task_yaml(name, f"{name}.jsonl", extra)})


def test_scripted_clustered_task_with_a_failure_is_the_same_on_0_2_and_3_workers(
    lmms_project: pytest.Pytester,
) -> None:
    write_qa(lmms_project, n=18, wrong=[1, 4, 9], fail=[7], cluster_size=3, extra="cluster_key: group\n")
    # other questions than qa's: a request two tasks share is answered once, by whichever
    # process asks first, and the "from cache" count would depend on the layout
    other = [{**row, "question": f"other {row['question']}"} for row in qa_rows(6, wrong=[0])]
    write_jsonl(lmms_project.path / "other.jsonl", other)
    lmms_project.makefile(".yaml", other=qa_task_yaml("other", "other.jsonl"))
    outcomes = [run_layout(lmms_project, n) for n in (0, 2, 3)]
    first = assert_same_in_every_layout(outcomes)
    metric = scored_metrics(first, "qa")["exact_match"]
    assert metric["value"] == pytest.approx(14 / 17) and metric["n_clusters"] == 6
    assert first.results["tasks"]["qa"]["failed"] == 1
    assert first.results["tasks"]["qa"]["yaml"].endswith("qa.yaml")
    assert first.results["tasks"]["qa"]["fingerprint"]
    assert first.results["model"]["identity"] == {"backend": "scripted", "model": "m"}
    assert first.ret == pytest.ExitCode.TESTS_FAILED  # the failing sample, in every layout


def test_random_model_on_the_offline_suite_is_the_same_on_0_and_2_workers(
    lmms_project: pytest.Pytester,
) -> None:
    shutil.copytree(OFFLINE, lmms_project.path / "offline")
    outcomes = [run_layout(lmms_project, n, "offline", model="random:0") for n in (0, 2)]
    first = assert_same_in_every_layout(outcomes)
    assert scored_metrics(first, "shapes_count")["number_match"]["n_clusters"] is not None
    # the likelihood variants (shapes_ppl.yaml) too: per-option log-probabilities, corpus perplexities
    assert set(first.results["tasks"]) == {
        "motion",
        "shapes_color",
        "shapes_count",
        "ppl_shapes_color",
        "ppl_shapes_caption",
    }
    assert first.ret == 0


BOOTSTRAP_UTILS = """
def total(results):
    # accuracy in percent plus the share of groups answered all right, like MME's acc + acc+:
    # not a mean, so its interval comes from the bootstrap
    by_group = {}
    for r in results:
        by_group.setdefault((r.cluster_id, r.doc_id), []).append(r.scores["exact_match"])
    groups = {}
    for (group, _), values in by_group.items():
        groups.setdefault(group, []).extend(values)
    accuracy = sum(r.scores["exact_match"] for r in results) / len(results)
    plus = sum(all(v == 1.0 for v in values) for values in groups.values()) / len(groups)
    return 100 * accuracy + 100 * plus
"""


def test_a_bootstrap_aggregate_is_the_same_on_0_and_2_workers(lmms_project: pytest.Pytester) -> None:
    (lmms_project.path / "utils.py").write_text(BOOTSTRAP_UTILS)
    extra = """\
        cluster_key: group
        metric_list:
          - metric: exact_match
          - metric: total
            aggregation: !function utils.total
        process_results: !function utils.scores
        """
    (lmms_project.path / "utils.py").write_text(
        BOOTSTRAP_UTILS
        + "\n\ndef scores(doc, response):\n"
        + "    right = float(response == doc['answer'])\n"
        + "    return {'exact_match': right, 'total': right}\n"
    )
    yaml = qa_task_yaml("qa", "qa.jsonl").replace("metric_list:\n  - metric: exact_match\n", "")
    write_jsonl(lmms_project.path / "qa.jsonl", qa_rows(16, wrong=[0, 5, 6, 11], cluster_size=4))
    lmms_project.makefile(".yaml", qa=yaml + textwrap.dedent(extra))
    outcomes = [run_layout(lmms_project, n) for n in (0, 2)]
    first = assert_same_in_every_layout(outcomes)
    total = scored_metrics(first, "qa")["total"]
    assert total["value"] == pytest.approx(75.0 + 25.0)
    assert total["ci_low"] < total["value"] < total["ci_high"]
    assert total["method"] != scored_metrics(first, "qa")["exact_match"]["method"]


def test_repeats_and_their_stability_are_the_same_on_0_and_2_workers(lmms_project: pytest.Pytester) -> None:
    rows = [
        {"id": str(i), "question": f"q{i}", "answer": "a", "reply": reply}
        for i, reply in enumerate(["a|a|a", "a|b|c", "b|b|b", "a|c|a", "c|a|a", "a|a|b"])
    ]
    write_jsonl(lmms_project.path / "qa.jsonl", rows)
    lmms_project.makefile(".yaml", qa=qa_task_yaml("qa", "qa.jsonl"))
    outcomes = [run_layout(lmms_project, n, "--lmms-repeats=3") for n in (0, 2)]
    first = assert_same_in_every_layout(outcomes)
    stability = first.results["tasks"]["qa"]["stability"]
    assert stability["k"] == 3 and stability["n_questions"] == 6
    assert any("EA " in line and "CR " in line for line in first.summary)


def test_comparison_with_a_baseline_run_and_its_gate_are_the_same_on_0_and_2_workers(
    lmms_project: pytest.Pytester,
) -> None:
    write_qa(lmms_project, n=30)
    run_layout(lmms_project, 0, name="base")
    write_qa(lmms_project, n=30, wrong=list(range(0, 30, 3)))
    args = ("--baseline=results/base", "--lmms-fail-on-regression")
    outcomes = [run_layout(lmms_project, n, *args) for n in (0, 2)]
    first = assert_same_in_every_layout(outcomes)
    comparison = first.results["comparison"]["tasks"]["qa"]
    assert comparison["diff"] == pytest.approx(-1 / 3)
    assert first.results["gates"]["failures"][0]["gate"] == "regression"
    assert first.ret == pytest.ExitCode.TESTS_FAILED


def test_comparison_with_a_baseline_model_is_the_same_on_0_and_2_workers(
    lmms_project: pytest.Pytester,
) -> None:
    write_qa(lmms_project, n=20, wrong=[3])
    outcomes = [run_layout(lmms_project, n, "--baseline-model=scripted:worse") for n in (0, 2)]
    first = assert_same_in_every_layout(outcomes)
    comparison = first.results["comparison"]
    assert comparison["baseline_identity"] == {"backend": "scripted", "model": "worse"}
    assert comparison["baseline_metrics"]["qa"]["exact_match"]["value"] == pytest.approx(0.45)
    assert comparison["tasks"]["qa"]["diff"] == pytest.approx(0.5)


def test_judge_counts_and_prompts_are_the_same_on_0_and_2_workers(lmms_project: pytest.Pytester) -> None:
    rows = [
        {
            "id": str(i),
            "question": f"q{i}",
            "answer": f"ans{i}",
            "reply": f"ans{i}" if i < 2 else f"other{i}",
            "verdict": "right" if i in (2, 3) else "wrong",
        }
        for i in range(6)
    ]
    write_jsonl(lmms_project.path / "graded.jsonl", rows)
    (lmms_project.path / "utils.py").write_text(JUDGE_UTILS)
    lmms_project.makefile(".yaml", graded=JUDGE_YAML)
    outcomes = [run_layout(lmms_project, n, "--judge-model=scripted:judge") for n in (0, 2)]
    first = assert_same_in_every_layout(outcomes)
    assert first.results["tasks"]["graded"]["judge"] == {"samples": 4, "calls": 4}
    assert first.results["judge"]["identity"] == {"backend": "scripted", "model": "judge"}
    assert set(first.results["judge"]["prompts"]) == {"test_grade"}
    assert first.results["judge"]["prompts"]["test_grade"] is not None
    assert any("4 of 6 samples needed the judge" in line for line in first.summary)


def test_a_failing_fail_under_gate_exits_1_on_0_and_2_workers(lmms_project: pytest.Pytester) -> None:
    write_qa(lmms_project, n=10, wrong=[0, 1, 2, 3])
    outcomes = [run_layout(lmms_project, n, "--lmms-fail-under=qa:exact_match=0.7") for n in (0, 2)]
    first = assert_same_in_every_layout(outcomes)
    assert first.ret == pytest.ExitCode.TESTS_FAILED
    assert first.results["gates"]["failures"] == [
        {"gate": "fail-under", "message": "qa:exact_match = 0.6000 < 0.7"}
    ]
    passing = run_layout(lmms_project, 2, "--lmms-fail-under=qa:exact_match=0.5")
    assert passing.ret == 0


WRONG_FINGERPRINT = """
import pytest


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    # a worker that read another definition of the task than the controller does
    if os.environ.get("PYTEST_XDIST_WORKER"):
        report.user_properties = [
            (k, {**v, "fingerprint": "0" * 64} if k == "lmms_task_source" else v)
            for k, v in report.user_properties
        ]
    return report
"""


def test_a_task_definition_that_differs_between_processes_is_an_error_in_the_summary(
    lmms_project: pytest.Pytester,
) -> None:
    write_qa(lmms_project, n=4)
    lmms_project.makeconftest(SCRIPTED_BACKEND + WRONG_FINGERPRINT)
    outcome = run_layout(lmms_project, 2)
    assert outcome.ret == pytest.ExitCode.TESTS_FAILED
    assert outcome.outcomes == {"passed": 4}
    assert outcome.results["tasks"]["qa"]["metrics"] == {}
    assert "differs between processes" in outcome.results["tasks"]["qa"]["error"]
    assert any("qa not aggregated: task 'qa'" in line for line in outcome.summary)


def test_the_controller_constructs_no_backend(
    lmms_project: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    constructed = tmp_path / "constructed.log"
    monkeypatch.setenv("SCRIPTED_INIT_LOG", str(constructed))
    write_qa(lmms_project, n=8)
    args = ("--baseline-model=scripted:worse", "--judge-model=scripted:judge")
    outcome = run_layout(lmms_project, 2, *args)
    who = {line.split()[0] for line in constructed.read_text().splitlines()}
    assert who == {"gw0", "gw1"}  # never "main", the controller
    # yet results.json names every model, from the identities the workers shipped
    assert outcome.results["model"]["identity"] == {"backend": "scripted", "model": "m"}
    assert outcome.results["comparison"]["baseline_identity"] == {"backend": "scripted", "model": "worse"}
    assert outcome.results["judge"]["identity"] == {"backend": "scripted", "model": "judge"}


def test_a_worker_killed_mid_run_loses_nothing(
    lmms_project: pytest.Pytester, model_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_qa(lmms_project, n=40, wrong=[3, 17, 30])
    monkeypatch.setenv("SCRIPTED_CRASH_AFTER", "4")  # gw1 dies in its second batch of 4
    monkeypatch.setenv("SCRIPTED_CRASH_WORKER", "gw1")
    crashed = run_layout(lmms_project, 2, name="crashed", cache="cache")
    assert crashed.ret == pytest.ExitCode.TESTS_FAILED
    assert crashed.outcomes["failed"] == 1  # xdist reports the sample its worker was running
    (lost,) = crashed.results["not_done"]
    assert lost["nodeid"].startswith("qa.yaml::qa[") and "crashed" in lost["reason"]
    assert any(f"not done, their worker died: {lost['nodeid']}" in line for line in crashed.summary)
    assert crashed.results["tasks"]["qa"]["failed"] == 1 and crashed.results["tasks"]["qa"]["n"] == 39
    # the dead worker's queue went to the others; what it had answered stayed in the cache
    first_calls = model_calls(model_log)
    assert len(set(first_calls)) == len(first_calls) >= 39

    monkeypatch.delenv("SCRIPTED_CRASH_AFTER")
    model_log.write_text("")
    rerun = run_layout(lmms_project, 2, name="rerun", cache="cache")
    # only what was missing is computed: over both runs every answer was computed once
    assert sorted(first_calls + model_calls(model_log), key=int) == [str(i) for i in range(40)]
    assert rerun.ret == 0 and rerun.results["not_done"] == []
    whole = run_layout(lmms_project, 0, name="whole")
    assert rerun.results["tasks"] == whole.results["tasks"]
    assert scored_metrics(whole, "qa")["exact_match"]["value"] == pytest.approx(37 / 40)


class Trickling(Recording):  # a backend like a server's: answers arrive one by one
    """The first answer at once, then nothing until the test releases the others."""

    def __init__(self) -> None:
        super().__init__(batch_size=8)
        self.release = threading.Event()

    def generate_each(self, requests: Sequence[Request], callback: object) -> None:
        assert callable(callback)
        callback(0, Response(text=f"a{requests[0].doc_id}"))
        self.release.wait(10)  # a slow server: the other answers come much later
        for index, request in enumerate(requests[1:], 1):
            callback(index, Response(text=f"a{request.doc_id}"))


def test_a_streamed_answer_is_durable_and_released_without_waiting_for_the_next(tmp_path: Path) -> None:
    backend = Trickling()
    planned = entries(3)
    with ResponseCache(tmp_path / "cache") as cache:
        engine = Engine(lambda: backend, IDENTITY, cache)
        engine.plan(planned)
        first_key, first_request = planned[0]
        # released while the backend is still busy with the others ...
        assert engine.response(first_key, first_request).result(timeout=5).text == "a0"
        # ... and only once it is on disk: a process killed now would not ask it again
        with ResponseCache(tmp_path / "cache") as other_process:
            assert other_process.get(first_key) is not None
            assert other_process.get(planned[1][0]) is None
        backend.release.set()
        assert [engine.response(k, r).result(timeout=5).text for k, r in planned] == ["a0", "a1", "a2"]
        engine.close()


def test_samples_a_stopped_run_never_ran_are_named_and_a_rerun_completes_them(
    lmms_project: pytest.Pytester, model_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_qa(lmms_project, n=40, wrong=[3])
    monkeypatch.setenv("SCRIPTED_CRASH_AFTER", "4")
    monkeypatch.setenv("SCRIPTED_CRASH_WORKER", "gw1")
    # no replacement worker: xdist stops the run, and what was still queued never runs
    stopped = run_layout(lmms_project, 2, "--max-worker-restart=0", name="halted", cache="cache")
    assert stopped.ret != 0
    not_done = {entry["nodeid"]: entry["reason"] for entry in stopped.results["not_done"]}
    done = {s["doc_id"] for s in _samples(lmms_project, "halted")}
    assert len(not_done) + len(done) == 40 and len(not_done) > 1
    assert {nodeid.partition("[")[2].rstrip("]") for nodeid in not_done}.isdisjoint(done)
    assert any(
        "sample(s) never run, the run stopped before them: qa.yaml::qa[" in line for line in stopped.summary
    )

    monkeypatch.delenv("SCRIPTED_CRASH_AFTER")
    first_calls = model_calls(model_log)
    model_log.write_text("")
    rerun = run_layout(lmms_project, 2, name="rerun", cache="cache")
    assert sorted(first_calls + model_calls(model_log), key=int) == [str(i) for i in range(40)]
    assert rerun.results["not_done"] == []
    assert rerun.results["tasks"] == run_layout(lmms_project, 0, name="whole").results["tasks"]


def _samples(pytester: pytest.Pytester, run_name: str) -> list[dict[str, Any]]:
    path = pytester.path / "results" / run_name / "samples_qa.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.usefixtures("lmms_home")
def test_the_tiny_hf_model_on_the_offline_suite_is_the_same_on_0_and_2_workers(
    lmms_project: pytest.Pytester,
) -> None:
    shutil.copytree(OFFLINE, lmms_project.path / "offline")
    outcomes = [
        run_layout(lmms_project, n, "offline", "--limit=4", model="hf:tiny-qwen2-vl", name=f"layout-{n}w")
        for n in (0, 2)
    ]
    first = assert_same_in_every_layout(outcomes)
    # the likelihood variants (shapes_ppl.yaml) too: per-option log-probabilities, corpus perplexities
    assert set(first.results["tasks"]) == {
        "motion",
        "shapes_color",
        "shapes_count",
        "ppl_shapes_color",
        "ppl_shapes_caption",
    }
    assert all(info["n"] == 4 and info["metrics"] for info in first.results["tasks"].values())
