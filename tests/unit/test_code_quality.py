"""The package stays ruff- and mypy-clean (STYLE.md); a failure names each finding."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is a dev extra")
def test_ruff_check_is_clean() -> None:
    result = subprocess.run(
        ["ruff", "check", "pytest_lmms", "tests", "benchmarks"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_is_clean() -> None:
    pytest.importorskip("mypy")
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# The statistics of a run's summary (intervals of 0/1 and of other scores, clustered or not,
# and a paired comparison) import no scipy: it cost 0.3 s at the end of every run.
SUMMARY_STATISTICS = """
import sys
from pytest_lmms.stats import compare, estimate
estimate([0, 1, 1, 0, 1])
estimate([0, 1, 1, 0, 1, 1], clusters=[1, 1, 2, 2, 3, 3])
estimate([0.2, 0.5, 0.9])
estimate([0.2, 0.5, 0.9, 0.4], clusters=["a", "a", "b", "b"])
compare({"x": 1.0, "y": 0.0, "z": 1.0}, {"x": 0.0, "y": 0.0, "z": 1.0})
print("scipy" in sys.modules)
"""


def test_the_statistics_of_a_summary_import_no_scipy() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SUMMARY_STATISTICS], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


def test_a_run_with_an_instant_model_imports_no_scipy(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\n")
    (pytester.path / "synthetic.yaml").write_text(
        'task: synthetic\ndataset_path: docs.jsonl\ndoc_to_text: "{{ question }}"\n'
        "doc_to_target: answer\ndoc_to_choice: options\nmetric_list:\n  - metric: choice_accuracy\n"
    )
    docs = [f'{{"id": "{i}", "question": "q{i}", "options": ["a", "b"], "answer": "A"}}' for i in range(20)]
    (pytester.path / "docs.jsonl").write_text("\n".join(docs) + "\n")
    pytester.makeconftest(
        "import sys\n\ndef pytest_unconfigure(config):\n"
        "    print('scipy imported:', 'scipy' in sys.modules)\n"
    )
    result = pytester.runpytest_subprocess(
        "--model=random:0",
        f"--lmms-cache={pytester.path / 'cache'}",
        f"--lmms-output={pytester.path / 'out'}",
    )
    result.stdout.fnmatch_lines(["*synthetic*choice_accuracy*", "scipy imported: False"])
