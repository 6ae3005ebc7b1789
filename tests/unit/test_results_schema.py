"""One typed results schema: results.json and sample lines are written and read through the
record types, fit the published JSON Schema, round-trip, and name the version they need."""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Any

import pytest

from pytest_lmms.cli import main
from pytest_lmms.report import (
    RESULTS_SCHEMA_VERSION,
    ResultsSchemaError,
    RunResults,
    TaskResult,
    encode,
    list_runs,
    read_results,
    results_json_schema,
    samples_json_schema,
    write_results,
)
from pytest_lmms.report._schema import SCHEMA_DIR, _document_schema, schema_files
from pytest_lmms.types import SampleResult
from tests.helpers import qa_rows, qa_task_yaml, write_jsonl
from tests.integration.test_judge import UTILS as JUDGE_UTILS
from tests.integration.test_judge import YAML as JUDGE_YAML

jsonschema = pytest.importorskip("jsonschema")

REGENERATE = 'python -c "from pytest_lmms.report._schema import write_schema_files; write_schema_files()"'


def _validator(schema: dict[str, Any]) -> Any:
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _errors(schema: dict[str, Any], document: Any) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in _validator(schema).iter_errors(document)
    ]


def _sample_lines(run_dir: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for path in sorted(run_dir.glob("*samples_*.jsonl"))
        for line in path.read_text().splitlines()
        if line.strip()
    ]


def _project(lmms_project: pytest.Pytester) -> pytest.Pytester:
    """Two tasks exercising every block: wrong answers, repeats, clusters and a judge."""
    write_jsonl(lmms_project.path / "qa.jsonl", qa_rows(12, wrong=[1, 4], cluster_size=3))
    lmms_project.makefile(".yaml", qa=qa_task_yaml("qa", "qa.jsonl", "cluster_key: group\n"))
    graded = [
        {"id": str(i), "question": f"q{i}", "answer": f"ans{i}", "reply": f"ans{i}" if i < 2 else f"x{i}"}
        | {"verdict": "right" if i in (2, 3) else "wrong"}
        for i in range(6)
    ]
    write_jsonl(lmms_project.path / "graded.jsonl", graded)
    (lmms_project.path / "utils.py").write_text(JUDGE_UTILS)
    lmms_project.makefile(".yaml", graded=JUDGE_YAML)
    return lmms_project


@pytest.fixture
def full_run(lmms_project: pytest.Pytester) -> Path:
    """A real session with a baseline model, a judge, repeats and a failing gate."""
    project = _project(lmms_project)
    result = project.runpytest(
        "--model=scripted:m1",
        "--baseline-model=scripted:worse",
        "--judge-model=scripted:judge",
        "--lmms-repeats=2",
        "--lmms-fail-under=qa:exact_match=0.99",
        "--lmms-run-name=full",
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # the gate, not a sample
    return project.path / "results" / "full"


def test_the_checked_in_json_schema_is_the_one_the_types_give() -> None:
    for name, generated in schema_files().items():
        stored = json.loads((SCHEMA_DIR / name).read_text())
        assert stored == generated, f"{name} is out of date with the record types: run {REGENERATE}"
    assert results_json_schema()["$defs"]["RunResults"]["properties"]["schema_version"] == {
        "const": RESULTS_SCHEMA_VERSION
    }
    assert RESULTS_SCHEMA_VERSION == 2


def test_a_real_run_fits_the_schema_and_round_trips(full_run: Path) -> None:
    data = json.loads((full_run / "results.json").read_text())
    assert data["schema_version"] == 2
    assert _errors(results_json_schema(), data) == []
    # every block is there, so the validation above was not vacuous
    assert data["tasks"]["qa"]["stability"]["highest_internal_variance"] is not None
    assert data["tasks"]["graded"]["judge"] == {"samples": 8, "calls": 8}
    assert data["judge"]["prompts"]["test_grade"]["system"] == "You grade answers."
    assert data["comparison"]["baseline_identity"] == {"backend": "scripted", "model": "worse"}
    assert data["comparison"]["tasks"]["qa"]["agreement"]["only_current"] > 0
    assert data["gates"]["failures"][0]["gate"] == "fail-under"
    assert data["completeness"]["complete"] is True
    assert data["git"] is None or set(data["git"]) == {"commit", "dirty"}

    run = read_results(full_run)
    assert isinstance(run, RunResults) and isinstance(run.tasks["qa"], TaskResult)
    assert run.tasks["qa"].metrics["exact_match"].value == pytest.approx(10 / 12)
    assert encode(run) == data  # read back and written again: the same document

    lines = _sample_lines(full_run)
    assert len(lines) == 2 * (12 + 6) * 2  # the run's and the baseline model's samples
    assert any("judge_log" in line for line in lines) and any("prompt" in line for line in lines)
    for line in lines:
        assert _errors(samples_json_schema(), line) == []
        assert SampleResult.from_json(line).to_json() == line


def test_a_run_compared_with_a_saved_baseline_fits_the_schema(lmms_project: pytest.Pytester) -> None:
    project = _project(lmms_project)
    project.runpytest("--model=scripted:worse", "--lmms-run-name=old")
    result = project.runpytest(
        "--model=scripted:m1", "--baseline=results/old", "--lmms-fail-on-regression=0", "--lmms-run-name=new"
    )
    assert result.ret == pytest.ExitCode.OK
    data = json.loads((project.path / "results" / "new" / "results.json").read_text())
    assert data["comparison"]["baseline"].endswith("results.json")
    assert data["comparison"]["tasks"]["qa"]["p_holm"] is not None
    assert _errors(results_json_schema(), data) == []
    assert encode(read_results(project.path / "results" / "new")) == data


def test_merged_shards_fit_the_schema(
    lmms_project: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    project = _project(lmms_project)
    for index in (0, 1):
        project.runpytest("--model=scripted:m1", f"--lmms-shard={index}/2", f"--lmms-run-name=s{index}")
    out = project.path / "results" / "merged"
    shards = [str(project.path / "results" / f"s{i}") for i in (0, 1)]
    assert main(["merge", *shards, "--out", str(out)]) == 0
    data = json.loads((out / "results.json").read_text())
    assert data["schema_version"] == 2 and len(data["merged_from"]) == 2
    assert data["completeness"]["planned"] == 18 and data["completeness"]["complete"] is True
    assert _errors(results_json_schema(), data) == []
    for line in _sample_lines(out):
        assert _errors(samples_json_schema(), line) == []


def test_deleting_a_field_from_a_record_type_fails_validation(full_run: Path) -> None:
    """What the checked-in schema test catches: a type without a field it writes no longer
    describes the files (and the regenerated schema differs from the checked-in one)."""
    task_block = json.loads((full_run / "results.json").read_text())["tasks"]["qa"]
    hints = typing.get_type_hints(TaskResult)
    kept = [
        (f.name, hints[f.name], dataclasses.field(default=f.default, metadata=f.metadata))
        for f in dataclasses.fields(TaskResult)
        if f.name != "fingerprint" and f.default is not dataclasses.MISSING
    ]
    kept += [
        (f.name, hints[f.name], dataclasses.field(default_factory=f.default_factory, metadata=f.metadata))
        for f in dataclasses.fields(TaskResult)
        if f.default_factory is not dataclasses.MISSING
    ]
    reduced = dataclasses.make_dataclass("TaskResult", kept, frozen=True, kw_only=True)
    reduced.__module__ = TaskResult.__module__
    assert _errors(_document_schema(TaskResult, "t"), task_block) == []
    errors = _errors(_document_schema(reduced, "t"), task_block)
    assert any("'fingerprint' was unexpected" in e for e in errors), errors
    assert _document_schema(reduced, "t") != _document_schema(TaskResult, "t")


def _as_version_1(data: dict[str, Any]) -> dict[str, Any]:
    """Today's layout as version 1 wrote it before the typed schema: no completeness or
    not_done block, no judge block, and a failed comparison without its statistics."""
    old = {k: v for k, v in data.items() if k not in ("completeness", "not_done", "judge")}
    old["schema_version"] = 1
    old["comparison"] = {
        "baseline": "elsewhere/results.json",
        "baseline_model": "scripted:worse",
        "tasks": {"qa": {"metric": "exact_match", "n": 0, "only_in_current": 12, "only_in_baseline": 0}}
        | {"graded": {"metric": "acc", "n": 0, "only_in_current": 6, "only_in_baseline": 0, "error": "x"}},
    }
    return old


def test_a_version_1_results_file_is_read(
    full_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = json.loads((full_run / "results.json").read_text())
    old_dir = tmp_path / "runs" / "old"
    old_dir.mkdir(parents=True)
    (old_dir / "results.json").write_text(json.dumps(_as_version_1(data)))
    for sample in full_run.glob("samples_*.jsonl"):
        (old_dir / sample.name).write_bytes(sample.read_bytes())
    run = read_results(old_dir)
    assert run.schema_version == 1 and run.completeness is None and run.judge is None
    assert run.comparison is not None and run.comparison.tasks["qa"].diff is None
    assert main(["runs", "--output", str(tmp_path / "runs")]) == 0
    listed = capsys.readouterr().out
    assert "old" in listed and "scripted:m1" in listed and "qa 0.8333" in listed
    assert main(["compare", str(full_run), str(old_dir)]) == 0
    assert "diff" in capsys.readouterr().out
    # written again, a version-1 run is a version-2 file that fits the schema
    again = write_results(tmp_path / "again.json", run)
    rewritten = json.loads(again.read_text())
    assert rewritten["schema_version"] == 1  # the run's own version is kept as read
    assert _errors(results_json_schema(), {**rewritten, "schema_version": 2}) == []


def test_a_newer_schema_version_is_refused_naming_the_file_and_version(
    full_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = json.loads((full_run / "results.json").read_text())
    newer = tmp_path / "newer"
    newer.mkdir()
    (newer / "results.json").write_text(json.dumps({**data, "schema_version": 3}))
    with pytest.raises(
        ResultsSchemaError, match=r"newer/results.json: schema_version 3 is newer than .*up to 2"
    ):
        read_results(newer)
    assert main(["compare", str(newer), str(full_run)]) == 2
    err = capsys.readouterr().err
    assert "newer/results.json" in err and "schema_version 3" in err and "upgrade pytest-lmms" in err
    assert main(["show", str(newer)]) == 2
    assert "schema_version 3" in capsys.readouterr().err
    assert list_runs(tmp_path) == []  # listing skips what it cannot read


def test_a_field_of_the_wrong_type_is_named(full_run: Path, tmp_path: Path) -> None:
    original = (full_run / "results.json").read_text()
    data = json.loads(original)
    data["tasks"]["qa"]["metrics"]["exact_match"]["n"] = "twelve"
    bad = tmp_path / "results.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(
        ResultsSchemaError, match=r"results.json: tasks.qa.metrics.exact_match.n: expected int"
    ):
        read_results(bad)
    with pytest.raises(ResultsSchemaError, match="results_file"):
        write_results(tmp_path / "out.json", {**json.loads(original), "results_file": 5})
