"""MMBench: prompt, rule-based matching and circular accuracy on rows in the dataset's schema
(lmms-lab/MMBench, config en: index a string, "L2-category", absent hints and options "nan")."""

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


def row(
    index: int,
    answer: str,
    hint: object = "nan",
    d: object = "dog",
    category: str = "object_localization",
    l2: str = "finegrained_perception (instance-level)",
    l2_column: str = "L2-category",
) -> dict:
    return {
        "index": str(index),
        "question": "Which animal is shown?",
        "hint": hint,
        "A": "cat",
        "B": "bird",
        "C": "fish",
        "D": d,
        "answer": answer,
        "category": category,
        l2_column: l2,
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
        row(8, "C", d="nan", category="ocr", l2="coarse_perception"),  # a three-option question
        row(1_000_008, "A", d="nan", category="ocr", l2="coarse_perception"),
        # other copies of MMBench: lower-case "l2-category", None / NaN for absent cells
        row(9, "A", hint=None, d=math.nan, l2="logic_reasoning", l2_column="l2-category"),
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


@pytest.mark.parametrize("doc_id", ["8", "9"])  # absent as the string "nan"; as None / NaN
def test_prompt_without_hint_or_missing_options(mmbench, doc_id: str) -> None:  # type: ignore[no-untyped-def]
    assert mmbench.request(mmbench.doc(doc_id)).messages[0].text == (
        "Which animal is shown?\nA. cat\nB. bird\nC. fish\nAnswer with the option's letter from the given choices directly."
    )


def test_the_level_2_ability_is_read_under_either_spelling(mmbench) -> None:  # type: ignore[no-untyped-def]
    assert "l2_FP-S" in mmbench.score(mmbench.doc("7"), "A")  # "L2-category", lmms-lab/MMBench
    assert "l2_LR" in mmbench.score(mmbench.doc("9"), "A")  # "l2-category", the official TSVs


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
    # per ability: question 7 (FP-S, object_localization) right, question 8 (CP, ocr) not
    assert estimates["l2_FP-S"].value == 1.0 and estimates["l2_FP-S"].n == 2
    assert estimates["l2_CP"].value == 0.0
    assert estimates["cat_object_localization"].value == 1.0 and estimates["cat_ocr"].value == 0.0
    assert "l2_LR" not in estimates  # no question of that ability in the run


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


class FakeJudge:
    """Answers like the official matcher would; records what it was asked."""

    def __init__(self, reply: str) -> None:
        self.reply = reply
        self.asked: list[str] = []

    def ask(self, prompt, /, **fields):  # type: ignore[no-untyped-def]
        self.asked.append(prompt.render(**fields))
        return self.reply


def test_the_judge_is_asked_only_when_the_rules_fail(mmbench) -> None:  # type: ignore[no-untyped-def]
    judge = FakeJudge("A")
    doc = mmbench.doc("7")
    assert mmbench.score(doc, "(A)", judge=judge)["accuracy"] == 1.0
    assert judge.asked == []
    assert mmbench.score(doc, "It is a small cat sitting on a mat.", judge=judge)["accuracy"] == 1.0
    assert judge.asked == [
        "You are an AI assistant who will help me to match an answer with several options of a "
        "single-choice question. You are provided with a question, several options, and an answer, "
        "and you need to find which option is most similar to the answer. If the meaning of all "
        "options are significantly different from the answer, output Z. Your should output a single "
        "uppercase character in A, B, C, D (if they are valid options), and Z. \n"
        "Example 1: \nQuestion: What is the main object in image?\n"
        "Options: A. teddy bear B. rabbit C. cat D. dog\nAnswer: a cute teddy bear\nYour output: A\n"
        "Example 2: \nQuestion: What is the main object in image?\n"
        "Options: A. teddy bear B. rabbit C. cat D. dog\nAnswer: Spider\nYour output: Z\n"
        "Example 3: \nQuestion: Which animal is shown??\n"
        "Options: There are several options: \nA. cat\nB. bird\nC. fish\nD. dog\n\n"
        "Answer: It is a small cat sitting on a mat.\nYour output: "
    ]


@pytest.mark.parametrize(("reply", "right"), [("A", 1.0), ("B", 0.0), ("Z", 0.0), ("no idea", 0.0)])
def test_the_judges_reply_is_read_with_the_rules(mmbench, reply: str, right: float) -> None:  # type: ignore[no-untyped-def]
    assert mmbench.score(mmbench.doc("7"), "a small furry pet", judge=FakeJudge(reply))["accuracy"] == right


def test_an_empty_answer_is_wrong_without_asking_the_judge(mmbench) -> None:  # type: ignore[no-untyped-def]
    judge = FakeJudge("A")
    assert mmbench.score(mmbench.doc("7"), "  ", judge=judge)["accuracy"] == 0.0
    assert judge.asked == []


def test_test_split_submission_rows(tmp_path: Path, mmbench) -> None:  # type: ignore[no-untyped-def]
    from pytest_lmms.report import write_submission

    results = [
        SampleResult("mmbench", doc_id, None, answer, answer, {}, cluster_id=None)
        for doc_id, answer in [("1000007", "B"), ("7", "A"), ("8", "C. fish")]
    ]
    rows = mmbench.submission(results)
    assert [r["index"] for r in rows] == [7, 8, 1000007]
    assert rows[0] == {
        "index": 7,
        "question": "Which animal is shown?",
        "hint": "Look closely.",
        "A": "cat",
        "B": "bird",
        "C": "fish",
        "D": "dog",
        "category": "object_localization",
        "l2-category": "finegrained_perception (instance-level)",
        "prediction": "A",
    }
    assert rows[1]["D"] is None and rows[1]["hint"] is None
    import pandas as pd

    written = pd.read_excel(write_submission(rows, tmp_path / "sub.xlsx"))
    assert list(written["prediction"]) == ["A", "C. fish", "B"]
    assert list(written.columns)[-1] == "prediction"


def test_test_split_task_scores_only_whether_an_option_was_read(tmp_path: Path, mmbench) -> None:  # type: ignore[no-untyped-def]
    test_yaml = MMBENCH_YAML.with_name("mmbench_test.yaml")
    (tmp_path / "test_fixture.yaml").write_text(
        f"include: {test_yaml}\ntask: mmbench_test_fixture\ndataset_path: rows.jsonl\n"
    )
    task = load_task(tmp_path / "test_fixture.yaml")
    assert task.score(task.doc("7"), "B") == {"answered": 1.0}
    assert task.score(task.doc("7"), "no idea") == {"answered": 0.0}
