"""`pytest-lmms submission`: a saved run's answers in a benchmark's submission format."""

from __future__ import annotations

import csv
import json
import textwrap
from pathlib import Path

import pytest

from pytest_lmms.cli import main
from tests.helpers import write_jsonl

UTILS = """
def answered(doc, response):
    return {"answered": float(bool(response))}


def submission(results, doc):
    return [{"id": r.doc_id, "question": doc(r.doc_id)["question"], "prediction": r.response}
            for r in sorted(results, key=lambda r: int(r.doc_id))]
"""


@pytest.fixture
def hidden(lmms_project: pytest.Pytester) -> pytest.Pytester:
    rows = [{"id": str(i), "question": f"q{i}", "reply": f"guess{i}"} for i in range(3)]
    write_jsonl(lmms_project.path / "hidden.jsonl", rows)
    (lmms_project.path / "utils.py").write_text(UTILS)
    lmms_project.makefile(
        ".yaml",
        hidden=textwrap.dedent(
            """\
            task: hidden_test
            dataset_path: hidden.jsonl
            doc_to_text: "Question {{ question }}: reply {{ reply }}"
            process_results: !function utils.answered
            metric_list: [answered]
            submission: !function utils.submission
            """
        ),
    )
    result = lmms_project.runpytest("--model=scripted:m", "--lmms-output=results", "--lmms-run-name=run")
    assert result.ret == 0
    return lmms_project


def test_submission_rows_from_a_saved_run(
    hidden: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    run = hidden.path / "results" / "run"
    assert main(["submission", str(run), "hidden_test", "--out", str(hidden.path / "sub.csv")]) == 0
    assert "wrote" in capsys.readouterr().out
    with open(hidden.path / "sub.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows == [{"id": str(i), "question": f"q{i}", "prediction": f"guess{i}"} for i in range(3)]
    assert main(["submission", str(run), "hidden_test", "--out", str(hidden.path / "sub.json")]) == 0
    assert json.loads((hidden.path / "sub.json").read_text())[2]["prediction"] == "guess2"


def test_submission_errors_name_the_problem(
    hidden: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    run = hidden.path / "results" / "run"
    assert main(["submission", str(run), "nope", "--out", str(hidden.path / "x.json")]) == 1
    assert "no task 'nope' in this run (tasks: hidden_test)" in capsys.readouterr().err
    assert main(["submission", str(run), "hidden_test", "--out", str(hidden.path / "x.txt")]) == 1
    assert "unknown submission format '.txt'" in capsys.readouterr().err
    assert main(["submission", str(Path(hidden.path / "missing")), "hidden_test", "--out", "x.json"]) == 1
    assert "cannot read" in capsys.readouterr().err
