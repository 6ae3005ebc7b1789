"""MMBench: prompt, rule-based matching and circular accuracy on rows in the dataset's schema."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest
from PIL import Image

from pytest_lmms.tasks import load_task
from pytest_lmms.types import SampleResult

MMBENCH_YAML = Path(__file__).resolve().parents[2] / "benchmarks" / "mmbench" / "mmbench.yaml"


def row(index: int, answer: str, hint: object = None, d: object = "dog") -> dict:
    return {
        "index": index,
        "question": "Which animal is shown?",
        "hint": hint,
        "A": "cat",
        "B": "bird",
        "C": "fish",
        "D": d,
        "answer": answer,
        "category": "object_localization",
        "l2-category": "finegrained_perception",
        "image": {"bytes": None, "path": "img.png"},
    }


@pytest.fixture
def mmbench(tmp_path: Path):  # type: ignore[no-untyped-def]
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG")
    (tmp_path / "img.png").write_bytes(buffer.getvalue())
    rows = [
        row(7, "A", hint="Look closely."),
        row(1_000_007, "B"),  # the same question, options rotated
        row(8, "C", d=math.nan),  # a three-option question
        row(1_000_008, "A", d=math.nan),
    ]
    with open(tmp_path / "rows.jsonl", "w") as handle:
        for r in rows:
            handle.write(json.dumps(r).replace("NaN", "null") + "\n")
    (tmp_path / "fixture.yaml").write_text(
        f"include: {MMBENCH_YAML}\ntask: mmbench_fixture\ndataset_path: rows.jsonl\n"
    )
    return load_task(tmp_path / "fixture.yaml")


def test_prompt_with_hint_and_all_options(mmbench) -> None:  # type: ignore[no-untyped-def]
    assert mmbench.request(mmbench.doc("7")).messages[0].text == (
        "Look closely.\nWhich animal is shown?\nA. cat\nB. bird\nC. fish\nD. dog\n"
        "Answer with the option's letter from the given choices directly."
    )


def test_prompt_without_hint_or_missing_options(mmbench) -> None:  # type: ignore[no-untyped-def]
    assert mmbench.request(mmbench.doc("8")).messages[0].text == (
        "Which animal is shown?\nA. cat\nB. bird\nC. fish\nAnswer with the option's letter from the given choices directly."
    )


@pytest.mark.parametrize(
    ("response", "right"),
    [
        ("A", 1.0),
        ("(A)", 1.0),
        ("a.", 1.0),
        ("The answer is A.", 1.0),
        ("cat", 1.0),
        ("B", 0.0),
        ("A or B", 0.0),
        ("", 0.0),
        ("E", 0.0),
    ],
)
def test_rule_based_matching(mmbench, response: str, right: float) -> None:  # type: ignore[no-untyped-def]
    assert mmbench.score(mmbench.doc("7"), response)["accuracy"] == right


def test_circular_accuracy_needs_every_rotation_right(mmbench) -> None:  # type: ignore[no-untyped-def]
    answers = {"7": "A", "1000007": "B", "8": "C", "1000008": "B"}  # question 8's rotation is wrong
    results = []
    for doc_id, response in answers.items():
        doc = mmbench.doc(doc_id)
        results.append(
            SampleResult(
                "mmbench",
                doc_id,
                doc["answer"],
                response,
                response,
                mmbench.score(doc, response),
                cluster_id=mmbench.cluster_id(doc),
            )
        )
    assert {r.cluster_id for r in results} == {"7", "8"}
    estimates = mmbench.aggregate(results)
    assert estimates["circular_accuracy"].value == pytest.approx(0.5)
    assert estimates["circular_accuracy"].method == "cluster-bootstrap"
    assert estimates["accuracy"].value == pytest.approx(0.75) and estimates["accuracy"].n_clusters == 2


def test_a_question_drawn_twice_by_the_bootstrap_counts_twice() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("mmbench_utils", MMBENCH_YAML.with_name("utils.py"))
    assert spec is not None and spec.loader is not None
    utils = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(utils)

    def result(doc_id: str, group: str, score: float) -> SampleResult:
        return SampleResult("m", doc_id, "A", "", "", {"circular_accuracy": score}, cluster_id=group)

    right = [result("1", "1", 1.0), result("1000001", "1", 1.0)]
    wrong = [result("2", "2", 1.0), result("1000002", "2", 0.0)]
    assert utils.circular_accuracy(right + right + wrong) == pytest.approx(2 / 3)
