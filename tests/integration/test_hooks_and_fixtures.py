"""Plugin hooks (backends, metrics, task folders, exporters) and the fixtures for tests
users write by hand (lmms_model, lmms_cache, lmms_judge, lmms_record)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import qa_rows, write_jsonl

PLUGIN = """
import json
from pathlib import Path

from pytest_lmms.types import Response

TASKS = Path(__file__).parent / "plugin_tasks"


class EchoBackend:
    name = "echo"

    def __init__(self, model_id=""):
        self.model_id = model_id

    def identity(self):
        return {"backend": "echo", "model": self.model_id}

    def generate(self, requests):
        return [Response(text=r.prompt_text.rpartition("reply ")[2].strip(), output_tokens=1) for r in requests]

    def close(self):
        pass


def shouting(prediction, target, **kwargs):
    return float(prediction.upper() == str(target).upper())


def pytest_lmms_register_backends(register):
    register("echo", EchoBackend)


def pytest_lmms_register_metrics(register):
    register("shouting_match", shouting)


def pytest_lmms_task_paths(config):
    return [TASKS]


def pytest_lmms_results(results, run_dir, config):
    # the typed results (pytest_lmms.report.RunResults), not a dict
    (Path(run_dir) / "exported.json").write_text(
        json.dumps({t: i.metrics["shouting_match"].value for t, i in results.tasks.items() if i.metrics})
    )

"""

TASK = """\
task: plugged
dataset_path: plugged.jsonl
doc_to_text: "Question {{ question }}: reply {{ reply }}"
doc_to_target: answer
metric_list:
  - metric: shouting_match
"""


def test_a_plugin_module_adds_a_backend_a_metric_a_task_folder_and_an_exporter(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(myplugin=PLUGIN)
    tasks = pytester.path / "plugin_tasks"
    tasks.mkdir()
    rows = qa_rows(4, wrong=[2])
    rows[0]["reply"] = rows[0]["answer"].upper()  # right for the case-blind metric
    write_jsonl(tasks / "plugged.jsonl", rows)
    (tasks / "plugged.yaml").write_text(TASK)
    (pytester.path / "tests").mkdir()
    result = pytester.runpytest_subprocess(
        "-p", "myplugin", "--model=echo:m", "--tasks=plugged", "--lmms-run-name=r", "tests"
    )
    assert result.parseoutcomes() == {"passed": 3, "wrong": 1}
    result.stdout.fnmatch_lines(["plugged*shouting_match*0.7500*"])
    exported = json.loads((pytester.path / "results" / "r" / "exported.json").read_text())
    assert exported == {"plugged": 0.75}


def test_an_exporter_that_fails_is_one_summary_line_and_fails_nothing(lmms_project: pytest.Pytester) -> None:
    write_jsonl(lmms_project.path / "qa.jsonl", qa_rows(2))
    from tests.helpers import qa_task_yaml

    lmms_project.makefile(".yaml", qa=qa_task_yaml("qa", "qa.jsonl"))
    lmms_project.makepyfile(
        badexport="def pytest_lmms_results(results, run_dir, config):\n    raise OSError('disk full')\n"
    )
    lmms_project.syspathinsert()
    result = lmms_project.runpytest("-p", "badexport", "--model=scripted:m1")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["exporter badexport failed: OSError: disk full"])


PROBES = """
def test_the_model_answers_through_the_cache(lmms_model, lmms_cache, lmms_record):
    first = lmms_model.ask("Question q: reply ans7")
    again = lmms_model.ask("Question q: reply ans7")
    assert first.text == "ans7" and again.text == "ans7"  # one model call (the log says)
    assert lmms_cache is not None
    lmms_record("my_probe", {"right": float(first.text == "ans7")})


def test_a_second_probe(lmms_model, lmms_record, lmms_judge):
    assert lmms_judge is None  # no --judge-model
    lmms_record("my_probe", {"right": 0.0})
"""


@pytest.mark.parametrize("workers", [[], ["-n", "2", "-p", "xdist"]])
def test_hand_written_tests_use_the_run_model_and_appear_in_the_summary(
    lmms_project: pytest.Pytester, model_log: Path, workers: list[str]
) -> None:
    lmms_project.makepyfile(test_probes=PROBES)
    result = lmms_project.runpytest("--model=scripted:m1", "--lmms-run-name=r", *workers)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["my_probe*right*0.5000*2*"])
    data = json.loads((lmms_project.path / "results" / "r" / "results.json").read_text())
    assert data["tasks"]["my_probe"]["metrics"]["right"]["n"] == 2
    assert model_log.read_text().split() == [next(iter(model_log.read_text().split()))]  # asked once
    again = lmms_project.runpytest("--model=scripted:m1", *workers)
    again.assert_outcomes(passed=2)
    assert len(model_log.read_text().split()) == 1  # the rerun answered from the cache
