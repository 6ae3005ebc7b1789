"""The plugin in real pytest sessions (pytester), with the scripted backend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import model_calls, qa_rows, qa_task_yaml, write_jsonl


def make_task(
    pytester: pytest.Pytester, name: str = "qa", n: int = 6, extra: str = "", **rows_kwargs: object
) -> Path:
    write_jsonl(pytester.path / f"{name}.jsonl", qa_rows(n, **rows_kwargs))  # type: ignore[arg-type]
    return pytester.makefile(".yaml", **{name: qa_task_yaml(name, f"{name}.jsonl", extra)})


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("--model=scripted:m1", "--lmms-output=results", "--lmms-cache=cache", *args)


def results_json(pytester: pytest.Pytester) -> dict:
    (path,) = sorted(pytester.path.glob("results/*/results.json"))[-1:]
    return json.loads(path.read_text())


def test_each_document_is_an_item_with_a_readable_node_id(lmms_project: pytest.Pytester) -> None:
    make_task(lmms_project, n=3)
    result = run(lmms_project, "--collect-only", "-q")
    result.stdout.fnmatch_lines(
        ["qa.yaml::qa[[]0[]]", "qa.yaml::qa[[]1[]]", "qa.yaml::qa[[]2[]]", "3 tests collected*"]
    )


def test_run_scores_samples_prints_table_and_writes_files(
    lmms_project: pytest.Pytester, model_log: Path
) -> None:
    make_task(lmms_project, n=6, wrong=[1, 4])
    result = run(lmms_project, "-v")
    result.stdout.fnmatch_lines(
        ["*qa.yaml::qa[[]1[]] WRONG*", "*pytest-lmms results*", "qa*exact_match*0.6667*"]
    )
    result.stdout.fnmatch_lines(["*4 passed, 2 wrong*"])
    assert result.ret == 0
    data = results_json(lmms_project)
    metric = data["tasks"]["qa"]["metrics"]["exact_match"]
    assert metric["n"] == 6 and metric["value"] == pytest.approx(4 / 6)
    assert metric["ci_low"] < metric["value"] < metric["ci_high"]
    samples = Path(data["tasks"]["qa"]["samples_file"])
    lines = [json.loads(line) for line in samples.read_text().splitlines()]
    assert sorted(line["doc_id"] for line in lines) == [str(i) for i in range(6)]
    assert {line["doc_id"]: line["scores"]["exact_match"] for line in lines}["1"] == 0.0
    assert sorted(model_calls(model_log)) == [str(i) for i in range(6)]


def test_second_identical_run_makes_no_model_call(lmms_project: pytest.Pytester, model_log: Path) -> None:
    make_task(lmms_project, n=5)
    run(lmms_project).assert_outcomes(passed=5)
    first = model_calls(model_log)
    second = run(lmms_project)
    second.assert_outcomes(passed=5)
    assert len(first) == 5 and model_calls(model_log) == first
    assert results_json(lmms_project)["throughput"]["cached"] == 5


def test_changed_prompt_is_a_cache_miss_but_changed_metric_is_not(
    lmms_project: pytest.Pytester, model_log: Path
) -> None:
    make_task(lmms_project, n=3)
    run(lmms_project).assert_outcomes(passed=3)
    make_task(lmms_project, n=3, extra="")  # identical: all cached
    lmms_project.makefile(".yaml", qa=qa_task_yaml("qa", "qa.jsonl").replace("exact_match", "contains"))
    run(lmms_project).assert_outcomes(passed=3)
    assert len(model_calls(model_log)) == 3
    lmms_project.makefile(".yaml", qa=qa_task_yaml("qa", "qa.jsonl").replace("Question", "Q"))
    run(lmms_project).assert_outcomes(passed=3)
    assert len(model_calls(model_log)) == 6


def test_failed_model_call_fails_the_sample_and_rerun_retries_only_it(
    lmms_project: pytest.Pytester, model_log: Path
) -> None:
    make_task(lmms_project, n=4, fail=[2])
    result = run(lmms_project)
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*qa[[]2[]]: model call failed: RuntimeError: server said no to 2*"])
    data = results_json(lmms_project)
    assert data["tasks"]["qa"]["n"] == 3 and data["tasks"]["qa"]["failed"] == 1
    samples = Path(data["tasks"]["qa"]["samples_file"]).read_text()
    assert '"doc_id":"2"' not in samples
    calls = len(model_calls(model_log))
    # the server recovers: only the failed sample is asked again
    write_jsonl(lmms_project.path / "qa.jsonl", qa_rows(4))
    lmms_project.makefile(".yaml", qa=qa_task_yaml("qa", "qa.jsonl"))
    run(lmms_project, "--lf").assert_outcomes(passed=1)
    assert len(model_calls(model_log)) == calls + 1


def test_pytest_selection_and_rerun_options_work_on_samples(
    lmms_project: pytest.Pytester, model_log: Path
) -> None:
    make_task(lmms_project, n=6, fail=[2, 4])
    run(lmms_project).assert_outcomes(passed=4, failed=2)
    # --lf: only the two failed samples run again
    last_failed = run(lmms_project, "--lf", "-v")
    last_failed.assert_outcomes(failed=2)
    last_failed.stdout.fnmatch_lines(["*run-last-failure: rerun previous 2 failures*"])
    # --ff: the failed samples run first, then the rest
    first_failed = run(lmms_project, "--ff", "-v")
    order = [line.split()[0] for line in first_failed.outlines if line.startswith("qa.yaml::qa[")]
    assert order[:2] == ["qa.yaml::qa[2]", "qa.yaml::qa[4]"] and len(order) == 6
    # --sw: stops at the first failure and resumes from it on the next run
    run(lmms_project, "--sw").assert_outcomes(passed=2, failed=1)
    stepwise = run(lmms_project, "--sw", "-v")
    stepwise.assert_outcomes(failed=1, deselected=2)
    assert [line.split()[0] for line in stepwise.outlines if line.startswith("qa.yaml::qa[")][0] == (
        "qa.yaml::qa[2]"
    )
    # a node id pasted from the output selects that sample; --deselect drops one
    pasted = run(lmms_project, "qa.yaml::qa[3]", "-v")
    pasted.assert_outcomes(passed=1)
    pasted.stdout.fnmatch_lines(["qa.yaml::qa[[]3[]] PASSED*"])
    run(lmms_project, "--deselect", "qa.yaml::qa[0]").assert_outcomes(passed=3, failed=2, deselected=1)
    # with the server fixed, --lf asks the model only for what failed
    calls = len(model_calls(model_log))
    write_jsonl(lmms_project.path / "qa.jsonl", qa_rows(6))
    run(lmms_project, "--lf").assert_outcomes(passed=2)
    assert len(model_calls(model_log)) == calls + 2


def test_reasoning_is_stripped_before_scoring_and_kept_raw(lmms_project: pytest.Pytester) -> None:
    rows = qa_rows(2)
    rows[0]["reply"] = "<think>it might be ans1</think> ans0"
    write_jsonl(lmms_project.path / "qa.jsonl", rows)
    lmms_project.makefile(".yaml", qa=qa_task_yaml("qa", "qa.jsonl"))
    run(lmms_project).assert_outcomes(passed=2)
    samples = Path(results_json(lmms_project)["tasks"]["qa"]["samples_file"]).read_text().splitlines()
    first = next(json.loads(line) for line in samples if json.loads(line)["doc_id"] == "0")
    assert first["response"] == "ans0" and first["raw"].startswith("<think>")
    assert first["scores"]["exact_match"] == 1.0


def test_broken_task_file_is_one_failure_and_other_tasks_still_run(lmms_project: pytest.Pytester) -> None:
    make_task(lmms_project, "good", n=2)
    lmms_project.makefile(".yaml", bad="task: bad\ndataset_path: bad.jsonl\nmetric_lst: []\n")
    result = run(lmms_project)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*bad.yaml*metric_lst*"])


def test_missing_dataset_names_the_file(lmms_project: pytest.Pytester) -> None:
    lmms_project.makefile(".yaml", nodata=qa_task_yaml("nodata", "missing.jsonl"))
    result = run(lmms_project)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*nodata.yaml*missing.jsonl*"])


def test_tasks_selection_by_name_group_and_glob_and_limit(lmms_project: pytest.Pytester) -> None:
    for name in ("alpha_one", "alpha_two", "beta"):
        make_task(lmms_project, name, n=4)
    lmms_project.makefile(".yaml", grp="group: greek\ntask: [beta]\n")
    run(lmms_project, "--tasks=alpha_*", "--limit=2").assert_outcomes(passed=4)
    run(lmms_project, "--tasks=greek").assert_outcomes(passed=4)
    run(lmms_project, "--tasks=beta,alpha_one", "--limit=1").assert_outcomes(passed=2)


def test_k_selection_and_junitxml(lmms_project: pytest.Pytester) -> None:
    make_task(lmms_project, n=4, wrong=[0])
    result = run(lmms_project, "-k", "qa and 0 or qa and 1", "--junitxml=out.xml")
    result.assert_outcomes(passed=1, deselected=2)
    xml = (lmms_project.path / "out.xml").read_text()
    assert 'name="qa[0]"' in xml and 'name="qa[1]"' in xml
    # the sample records in the properties are JSON a CI system can parse
    import xml.etree.ElementTree as ElementTree

    properties = {
        p.get("name"): p.get("value")
        for case in ElementTree.parse(lmms_project.path / "out.xml").iter("testcase")
        if case.get("name") == "qa[1]"
        for p in case.iter("property")
    }
    record = json.loads(properties["lmms_result"])
    assert record["doc_id"] == "1" and record["scores"] == {"exact_match": 1.0}


def test_clustered_task_reports_a_cluster_interval(lmms_project: pytest.Pytester) -> None:
    make_task(lmms_project, n=12, wrong=[0, 1, 2], cluster_size=3, extra="cluster_key: group\n")
    assert run(lmms_project).parseoutcomes() == {"passed": 9, "wrong": 3}
    metric = results_json(lmms_project)["tasks"]["qa"]["metrics"]["exact_match"]
    assert metric["n_clusters"] == 4 and metric["method"] == "agresti-coull-cluster"


def test_settings_precedence_cli_over_ini_over_config_file(lmms_project: pytest.Pytester) -> None:
    make_task(lmms_project, n=5)
    lmms_project.makefile(".yaml", _run="limit: 4\nmodel: scripted:from-file\n")
    lmms_project.makeini("[pytest]\nlmms_limit = 3\n")
    result = lmms_project.runpytest("--lmms-config=_run.yaml", "--lmms-output=results", "--lmms-cache=cache")
    result.assert_outcomes(passed=3)
    assert results_json(lmms_project)["model"]["identity"]["model"] == "from-file"
    run(lmms_project, "--lmms-config=_run.yaml", "--limit=2").assert_outcomes(passed=2)


def test_bad_option_values_are_usage_errors(lmms_project: pytest.Pytester) -> None:
    make_task(lmms_project, n=1)
    result = run(lmms_project, "--limit=zero")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--limit expects an integer*"])
    result = lmms_project.runpytest(
        "--model=scripted:m", "--model-args=batch_size=2,bogus=1", "--lmms-cache=cache"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--model=scripted:m: unknown argument 'bogus'*valid arguments: batch_size*"]
    )
    result = lmms_project.runpytest("--model=nosuch:x", "--lmms-cache=cache")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown backend 'nosuch'*known: *random*"])


def test_results_are_shipped_from_xdist_workers_which_batch_their_queue(
    lmms_project: pytest.Pytester, model_log: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    batches = tmp_path / "batches.log"
    monkeypatch.setenv("SCRIPTED_BATCHES", str(batches))
    make_task(lmms_project, n=40, wrong=[3])
    result = run(lmms_project, "-n", "2", "-p", "xdist")
    assert result.parseoutcomes() == {"passed": 39, "wrong": 1}
    data = results_json(lmms_project)
    assert data["tasks"]["qa"]["n"] == 40
    # the controller, which collects nothing, still aggregates what the workers shipped
    assert data["tasks"]["qa"]["metrics"]["exact_match"]["value"] == pytest.approx(39 / 40)
    result.stdout.fnmatch_lines(["qa*exact_match*0.9750*"])
    assert sorted(model_calls(model_log), key=int) == [str(i) for i in range(40)]
    sizes = [int(line) for line in batches.read_text().split()]
    # each worker plans what xdist queued for it: full batches of 4, not one call per item
    assert sum(sizes) == 40 and sizes.count(4) >= 5


def test_no_cache_option_always_calls_the_model(lmms_project: pytest.Pytester, model_log: Path) -> None:
    make_task(lmms_project, n=2)
    lmms_project.runpytest("--model=scripted:m1", "--no-lmms-cache").assert_outcomes(passed=2)
    lmms_project.runpytest("--model=scripted:m1", "--no-lmms-cache").assert_outcomes(passed=2)
    assert len(model_calls(model_log)) == 4
    assert not (lmms_project.path / ".lmms-cache").exists()


def test_lmms_seed_seeds_python_random_only_in_sessions_with_samples(lmms_project: pytest.Pytester) -> None:
    make_task(lmms_project, n=1)
    lmms_project.makepyfile(
        probe="import random\n\ndef pytest_collection_finish(session):\n    print('draw', random.random())\n"
    )

    def draw(*args: str) -> str:
        result = lmms_project.runpytest_subprocess(
            "-p", "probe", "--model=scripted:m", "--no-lmms-cache", *args
        )
        return next(line for line in result.outlines if line.startswith("draw"))

    assert draw("--lmms-seed=5") == draw("--lmms-seed=5") != draw("--lmms-seed=6")
    lmms_project.makepyfile(test_plain="def test_x():\n    pass\n")
    assert draw("test_plain.py") != draw("test_plain.py")  # an ordinary suite is left unseeded


def test_generation_overrides_reach_the_request_and_the_cache_key(
    lmms_project: pytest.Pytester, model_log: Path
) -> None:
    make_task(lmms_project, n=2)
    run(lmms_project).assert_outcomes(passed=2)
    run(lmms_project, "--lmms-gen-kwargs=max_new_tokens=3").assert_outcomes(passed=2)
    assert len(model_calls(model_log)) == 4  # a generation parameter is part of the key
    assert results_json(lmms_project)["config"]["gen_kwargs"] == {"max_new_tokens": "3"}
    bad = run(lmms_project, "--lmms-gen-kwargs=beams=4")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*unknown key 'beams'*"])
    assert run(lmms_project, "--lmms-gen-kwargs=temperature=hot").ret == pytest.ExitCode.USAGE_ERROR


def test_reasoning_tags_option_turns_stripping_off(lmms_project: pytest.Pytester) -> None:
    rows = qa_rows(1)
    rows[0]["reply"] = "<think>hmm</think>ans0"
    write_jsonl(lmms_project.path / "qa.jsonl", rows)
    lmms_project.makefile(".yaml", qa=qa_task_yaml("qa", "qa.jsonl"))
    run(lmms_project).assert_outcomes(passed=1)
    kept = run(lmms_project, "--lmms-reasoning-tags=none")
    assert kept.parseoutcomes() == {"wrong": 1}  # the block stays in the answer, which is then wrong
    assert run(lmms_project, "--lmms-reasoning-tags=<<bad").ret == pytest.ExitCode.USAGE_ERROR
