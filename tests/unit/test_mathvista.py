"""MathVista testmini: the released query, rule extraction, the judge fallback, normalization
per answer type and accuracy per skill / task, on rows in the hub's schema."""

from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from PIL import Image

from pytest_lmms.scoring import strip_reasoning
from pytest_lmms.scoring.judge import Judge
from pytest_lmms.tasks import load_task
from pytest_lmms.types import Request, Response, SampleResult

MATHVISTA_YAML = Path(__file__).resolve().parents[2] / "benchmarks" / "mathvista" / "mathvista_testmini.yaml"

HINT_CHOICE = (
    "Hint: Please answer the question and provide the correct option letter, e.g., A, B, C, D, at the end."
)
HINT_INTEGER = (
    "Hint: Please answer the question requiring an integer answer and provide the final value, e.g., 1, 2, 3, "
    "at the end."
)
HINT_FLOAT_1 = (
    "Hint: Please answer the question requiring a floating-point number with one decimal place and provide "
    "the final value, e.g., 1.2, 1.3, 1.4, at the end."
)
HINT_FLOAT_2 = (
    "Hint: Please answer the question requiring a floating-point number with two decimal places and provide "
    "the final value, e.g., 1.23, 1.34, 1.45, at the end."
)
HINT_LIST = (
    "Hint: Please answer the question requiring a Python list as an answer and provide the final list, "
    "e.g., [1, 2, 3], [1.2, 1.3, 1.4], at the end."
)

# the queries written out by hand in the released format (data/query.json; "2" and "5" are
# its entries verbatim); the fixture rows carry them in their "query" column, as the hub does
QUERIES = {
    "2": HINT_INTEGER + "\nQuestion: what is the total volume of the measuring cup? (Unit: g)",
    "5": HINT_CHOICE + "\nQuestion: Find $m\\angle H$\nChoices:\n(A) 97\n(B) 102\n(C) 107\n(D) 122",
    "104": HINT_FLOAT_1 + "\nQuestion: What is the fraction of females facing the camera?",
    "506": HINT_FLOAT_2 + "\nQuestion: How much money does Luca need to buy a sour apple candy and a "
    "butterscotch candy? (Unit: $)",
    "540": HINT_LIST + "\nQuestion: Between which two years does the line  graph saw its maximum peak?",
    "852": HINT_CHOICE + "\nQuestion: What fraction of the shape is blue?\nChoices:\n(A) 3/11\n(B) 8/11\n"
    "(C) 6/11\n(D) 3/5",
    "61": HINT_CHOICE + "\nQuestion: How long is the bar?\nChoices:\n(A) 3cm\n(B) 6cm\n(C) 9cm",
}


def row(
    pid: str,
    question: str,
    answer: str,
    answer_type: str,
    skills: list[str],
    task: str,
    choices: list[str] | None = None,
    unit: str | None = None,
    precision: float | None = None,
) -> dict[str, Any]:
    return {
        "pid": pid,
        "question": question,
        "image": f"images/{pid}.jpg",
        "decoded_image": {"bytes": None, "path": "img.png"},
        "choices": choices,
        "unit": unit,
        "precision": precision,  # float64 on the hub
        "answer": answer,
        "question_type": "multi_choice" if choices else "free_form",
        "answer_type": answer_type,
        "metadata": {
            "split": "testmini",
            "language": "english",
            "img_width": 8,
            "img_height": 8,
            "source": "fixture",
            "category": "math-targeted-vqa",
            "task": task,
            "context": "bar chart",
            "grade": "not applicable",
            "skills": skills,
        },
        "query": QUERIES[pid],
    }


ROWS = [
    row(
        "2",
        "what is the total volume of the measuring cup?",
        "1000",
        "integer",
        ["numeric commonsense", "arithmetic reasoning"],
        "visual question answering",
        unit="g",
    ),
    row(
        "5",
        "Find $m\\angle H$",
        "97",
        "text",
        ["geometry reasoning", "algebraic reasoning"],
        "geometry problem solving",
        choices=["97", "102", "107", "122"],
    ),
    row(
        "104",
        "What is the fraction of females facing the camera?",
        "0.6",
        "float",
        ["arithmetic reasoning"],
        "figure question answering",
        precision=1.0,
    ),
    row(
        "506",
        "How much money does Luca need to buy a sour apple candy and a butterscotch candy?",
        "1.45",
        "float",
        ["arithmetic reasoning"],
        "math word problem",
        unit="$",
        precision=2.0,
    ),
    row(
        "540",
        "Between which two years does the line  graph saw its maximum peak?",
        "[2007, 2008]",
        "list",
        ["statistical reasoning"],
        "figure question answering",
    ),
    row(
        "852",
        "What fraction of the shape is blue?",
        "8/11",
        "text",
        ["arithmetic reasoning", "logical reasoning"],
        "math word problem",
        choices=["3/11", "8/11", "6/11", "3/5"],
    ),
    row(
        "61",
        "How long is the bar?",
        "6cm",
        "text",
        ["arithmetic reasoning"],
        "figure question answering",
        choices=["3cm", "6cm", "9cm"],
    ),
]


@pytest.fixture(scope="module")
def mathvista(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("mathvista")
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (255, 255, 255)).save(buffer, format="PNG")
    (folder / "img.png").write_bytes(buffer.getvalue())
    with open(folder / "rows.jsonl", "w") as handle:
        for r in ROWS:
            handle.write(json.dumps(r) + "\n")
    (folder / "fixture.yaml").write_text(
        f"include: {MATHVISTA_YAML}\ntask: mathvista_fixture\ndataset_path: rows.jsonl\n"
    )
    return load_task(folder / "fixture.yaml")


@pytest.fixture(scope="module")
def utils() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mathvista_utils", MATHVISTA_YAML.with_name("utils.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeJudge:
    """A Judge whose model answers ``answer`` and keeps every request it was sent."""

    def __init__(self, answer: str) -> None:
        self.requests: list[Request] = []

        def complete(request: Request) -> Response:
            self.requests.append(request)
            return Response(text=answer)

        self.judge = Judge(complete=complete)


def score(task: Any, pid: str, response: str, judge: Judge | None = None) -> float:
    return task.score(task.doc(pid), response, judge=judge)["accuracy"]


# --- prompt --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pid", "expected"),
    [
        # multi_choice: hint, question, "Choices:" and "(A) ..." lines
        ("852", f"{HINT_CHOICE}\nQuestion: What fraction of the shape is blue?\nChoices:\n(A) 3/11\n(B) 8/11\n"
         "(C) 6/11\n(D) 3/5"),
        # free_form integer with a unit
        ("2", f"{HINT_INTEGER}\nQuestion: what is the total volume of the measuring cup? (Unit: g)"),
        # float, precision 1 (1.0 on the hub)
        ("104", f"{HINT_FLOAT_1}\nQuestion: What is the fraction of females facing the camera?"),
        # float, precision 2, with a unit
        ("506", f"{HINT_FLOAT_2}\nQuestion: How much money does Luca need to buy a sour apple candy and a "
         "butterscotch candy? (Unit: $)"),
        # list
        ("540", f"{HINT_LIST}\nQuestion: Between which two years does the line  graph saw its maximum peak?"),
    ],
)  # fmt: skip
def test_prompt_is_the_image_then_the_released_query(mathvista, pid: str, expected: str) -> None:  # type: ignore[no-untyped-def]
    (message,) = mathvista.request(mathvista.doc(pid)).messages
    assert [part.type for part in message.content] == ["image", "text"]
    assert message.text == expected
    assert message.text == mathvista.doc(pid)["query"]  # the hub's own query column


def test_the_hint_names_every_answer_type_exactly(utils: ModuleType) -> None:
    assert utils.HINT_MULTI_CHOICE == HINT_CHOICE
    assert utils.HINT_INTEGER == HINT_INTEGER
    assert utils.HINT_FLOAT == {1: HINT_FLOAT_1, 2: HINT_FLOAT_2}
    assert utils.HINT_LIST == HINT_LIST


def test_a_float_precision_without_an_official_hint_is_an_error(utils: ModuleType) -> None:
    doc = {**ROWS[2], "precision": 3.0}
    with pytest.raises(ValueError, match="no official hint"):
        utils.build_query(doc)


# --- rule extraction -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "right"),
    [
        ("(B)", 1.0),
        ("B", 1.0),
        ("b", 1.0),
        ("**B**", 1.0),
        ("8/11", 1.0),  # the choice's text
        ("8/11.", 1.0),
        ("The answer is B because 8 of the 11 parts are blue.", 1.0),
        ("The answer is C because 6 parts are blue.", 0.0),
        ("The correct answer is 8/11.", 1.0),  # a choice's text after "answer is"
        ("Eight of the eleven parts are blue.\nThus, the answer is (B) 8/11.\nHope this helps.", 1.0),
        ("Eight parts of eleven are blue.\n\nB", 1.0),  # the last line
        # unread by the rules, no judge: the nearest choice by edit distance (the official
        # normalization), the first one on a tie
        ("B or C", 0.0),  # all four at distance 6: 3/11
        ("(A) and (B)", 0.0),  # the first "(X)": A
        ("", 0.0),  # empty: wrong, not the nearest choice
        ("E", 0.0),  # not an option: 3/5 is nearest
        ("eight elevenths", 0.0),  # a tie: 3/11
        ("8 / 11", 1.0),
    ],
)
def test_multiple_choice_extraction(mathvista, response: str, right: float) -> None:  # type: ignore[no-untyped-def]
    assert score(mathvista, "852", response) == right


@pytest.mark.parametrize(
    ("response", "right"),
    [
        ("97", 1.0),  # official quick rule: the response is a choice
        ("A", 1.0),
        ("The answer is 97.", 1.0),
        ("(A) 97", 1.0),
        ("102", 0.0),
        ("m∠H = 97", 1.0),  # no rule reads it; 97 is the nearest choice
    ],
)
def test_numeric_choices(mathvista, response: str, right: float) -> None:  # type: ignore[no-untyped-def]
    assert score(mathvista, "5", response) == right


@pytest.mark.parametrize(
    ("response", "right"), [("6 cm", 1.0), ("6cm", 1.0), ("about 9 cm", 0.0), ("B", 1.0)]
)
def test_without_a_judge_an_unread_answer_is_the_nearest_choice(
    mathvista, response: str, right: float
) -> None:  # type: ignore[no-untyped-def]
    assert score(mathvista, "61", response) == right


@pytest.mark.parametrize(
    ("response", "right"),
    [
        ("1000", 1.0),
        ("1,000", 1.0),
        ("1000.0", 1.0),  # int(float(x)), as calculate_score.py normalizes integers
        ("The total volume is 1,000 g.", 1.0),
        ("The answer is 1000 because 4 cups of 250 g fill it.", 1.0),  # the stated number wins
        ("It holds 4 cups of 250 g, so 1000", 1.0),  # else the last number
        ("\\boxed{1000}", 1.0),
        ("999", 0.0),
        ("", 0.0),
        ("I cannot tell from the image.", 0.0),  # no rule reads it, no judge -> wrong
    ],
)
def test_integer_extraction(mathvista, response: str, right: float) -> None:  # type: ignore[no-untyped-def]
    assert score(mathvista, "2", response) == right


@pytest.mark.parametrize(
    ("pid", "response", "right"),
    [
        ("104", "0.6", 1.0),
        ("104", "0.60", 1.0),
        ("104", "0.63", 1.0),  # rounded to one decimal: 0.6
        ("104", "0.66", 0.0),  # 0.7
        ("104", "3/5", 1.0),  # a fraction: 0.6
        ("104", "The answer is \\frac{3}{5}.", 1.0),
        ("104", "Six of the ten females face the camera: 0.6.", 1.0),
        ("506", "$1.45", 1.0),
        ("506", "1.450", 1.0),
        ("506", "1.449", 1.0),  # round(1.449, 2) = 1.45
        ("506", "Luca needs $1.40.", 0.0),
    ],
)
def test_float_extraction_rounds_to_the_precision(mathvista, pid: str, response: str, right: float) -> None:  # type: ignore[no-untyped-def]
    assert score(mathvista, pid, response) == right


@pytest.mark.parametrize(
    ("response", "right"),
    [
        ("[2007, 2008]", 1.0),
        ("The peak is between [2007,2008].", 1.0),  # the list's items re-joined with ", "
        ("[2006, 2007]", 0.0),
        ("\\[ 2007 + 1 = 2008 \\]", 0.0),  # LaTeX display math is not a list
        ("between 2007 and 2008", 0.0),  # no list, no judge -> wrong
    ],
)
def test_list_extraction(mathvista, response: str, right: float) -> None:  # type: ignore[no-untyped-def]
    assert score(mathvista, "540", response) == right


@pytest.mark.parametrize(
    ("pid", "response", "extraction"),
    [
        ("852", "(B)", "B"),
        ("852", "8/11", "B"),
        ("852", "B or C", None),
        ("852", "", None),
        ("2", "1,000", "1000.0"),
        ("2", "It dropped by -2 units.", "-2.0"),
        ("2", "-2", "-2"),  # official quick rule: int(response)
        ("104", "1/2", "0.5"),
        ("506", "3.50", "3.5"),
        ("540", "[2007,  2008]", "[2007, 2008]"),
    ],
)
def test_rule_extractions(utils: ModuleType, pid: str, response: str, extraction: str | None) -> None:
    doc = next(r for r in ROWS if r["pid"] == pid)
    assert utils.extract_by_rules(response, doc) == extraction


def test_a_reasoning_block_is_stripped_before_scoring(mathvista) -> None:  # type: ignore[no-untyped-def]
    response = "<think>Maybe the answer is C... no, 8 of 11 parts are blue.</think>The answer is B."
    assert score(mathvista, "852", strip_reasoning(response)) == 1.0
    assert score(mathvista, "2", strip_reasoning("<think>4 cups of 250</think>1,000")) == 1.0


# --- normalization (calculate_score.py) ----------------------------------------------------


def test_normalization_per_answer_type(utils: ModuleType) -> None:
    choice_doc, integer_doc, float_doc, list_doc = ROWS[5], ROWS[0], ROWS[3], ROWS[4]
    assert utils.normalize_extraction("C", choice_doc) == "6/11"
    assert utils.normalize_extraction("(c) six elevenths", choice_doc) == "6/11"  # "(x)" gives the letter
    assert utils.normalize_extraction("8/12", choice_doc) == "8/11"  # nearest choice by edit distance
    assert utils.normalize_extraction("b", choice_doc) == "3/5"  # official: a bare lowercase letter is text
    assert utils.normalize_extraction("3.7", integer_doc) == "3"  # int(float(x)) truncates
    assert utils.normalize_extraction("a lot", integer_doc) is None
    assert utils.normalize_extraction("inf", integer_doc) is None
    assert utils.normalize_extraction("3.50", float_doc) == "3.5"
    assert utils.normalize_extraction("3.14159", float_doc) == "3.14"
    assert utils.normalize_extraction("[2007, 2008]", list_doc) == "[2007, 2008]"


def test_edit_distance_and_the_first_nearest_choice(utils: ModuleType) -> None:
    assert utils.edit_distance("kitten", "sitting") == 3
    assert utils.edit_distance("", "abc") == 3
    assert utils.most_similar("ab", ["ax", "ay"]) == "ax"  # a tie: the first


# --- judge fallback ------------------------------------------------------------------------


def test_official_extraction_prompt(utils: ModuleType) -> None:
    prompt = utils.EXTRACT_PROMPT
    assert prompt.name == "mathvista_extract" and prompt.max_new_tokens == 256
    assert prompt.fields == ["query", "response"]
    assert prompt.template.startswith(
        "Please read the following example. Then extract the answer from the model response and type it "
        "at the end of the prompt.\n\nHint: Please answer the question requiring an integer answer"
    )
    assert (
        "Question: What fraction of the shape is blue?\nChoices:\n(A) 3/11\n(B) 8/11\n(C) 6/11\n(D) 3/5\n\n"
        "Model response: The correct answer is (B) 8/11.\n\nExtracted answer: B\n\n{query}\n\n{response}\n\n"
        "Extracted answer: "
    ) in prompt.template
    assert prompt.template.endswith("\n\n{query}\n\n{response}\n\nExtracted answer: ")


@pytest.mark.parametrize(
    ("pid", "response"),
    [("852", "B"), ("852", "The answer is (B)."), ("2", "1,000 g"), ("540", "[2007, 2008]"), ("104", "0.6")],
)
def test_the_judge_is_not_asked_when_the_rules_read_the_answer(mathvista, pid: str, response: str) -> None:  # type: ignore[no-untyped-def]
    fake = FakeJudge("A")
    assert score(mathvista, pid, response, judge=fake.judge) == 1.0
    assert fake.requests == [] and fake.judge.calls == 0


@pytest.mark.parametrize(
    ("pid", "response", "judge_answer", "right"),
    [
        ("852", "A or B, probably the second.", "B", 1.0),
        ("852", "eight elevenths", "8/11", 1.0),
        ("852", "eight elevenths", "(C) 6/11", 0.0),
        ("540", "between 2007 and 2008", "[2007, 2008]", 1.0),
        ("2", "I cannot tell from the image.", "1000", 1.0),
        ("2", "I cannot tell from the image.", "", 0.0),  # an empty extraction is wrong
        ("5", "m∠H = 97", "97", 1.0),
    ],
)
def test_the_judge_extracts_when_the_rules_fail(  # type: ignore[no-untyped-def]
    mathvista, pid: str, response: str, judge_answer: str, right: float
) -> None:
    fake = FakeJudge(judge_answer)
    assert score(mathvista, pid, response, judge=fake.judge) == right
    (request,) = fake.requests
    text = request.messages[0].text
    assert text.startswith("Please read the following example. Then extract the answer")
    assert text.endswith(f"\n\n{QUERIES[pid]}\n\n{response}\n\nExtracted answer: ")
    assert request.task == "judge:mathvista_extract"


def test_an_empty_response_is_wrong_without_asking_the_judge(mathvista) -> None:  # type: ignore[no-untyped-def]
    fake = FakeJudge("B")
    assert score(mathvista, "852", "  ", judge=fake.judge) == 0.0
    assert fake.requests == []


# --- metrics -------------------------------------------------------------------------------


def test_scores_carry_the_question_skills_and_task(mathvista) -> None:  # type: ignore[no-untyped-def]
    assert mathvista.score(mathvista.doc("852"), "B") == {
        "accuracy": 1.0,
        "acc_skill_arithmetic_reasoning": 1.0,
        "acc_skill_logical_reasoning": 1.0,
        "acc_task_math_word_problem": 1.0,
    }


def test_metric_rows_cover_the_seven_skills_and_five_tasks(mathvista, utils: ModuleType) -> None:  # type: ignore[no-untyped-def]
    expected = ["accuracy"]
    expected += [f"acc_skill_{utils.snake(skill)}" for skill in utils.SKILLS]
    expected += [f"acc_task_{utils.snake(task)}" for task in utils.TASKS]
    assert mathvista.metric_names == expected
    assert "acc_skill_numeric_commonsense" in expected and "acc_task_visual_question_answering" in expected
    assert len(expected) == 13


def test_accuracy_per_skill_and_per_task(mathvista) -> None:  # type: ignore[no-untyped-def]
    # 2 right, 5 wrong, 104 right, 506 wrong, 540 right, 852 right
    answers = {"2": "1000", "5": "102", "104": "0.6", "506": "1.40", "540": "[2007, 2008]", "852": "B"}
    results = [
        SampleResult("mathvista", pid, mathvista.doc(pid)["answer"], text, text, score_row)
        for pid, text in answers.items()
        for score_row in [mathvista.score(mathvista.doc(pid), text)]
    ]
    estimates = mathvista.aggregate(results)
    values = {name: estimate.value for name, estimate in estimates.items()}
    assert values == pytest.approx(
        {
            "accuracy": 4 / 6,
            "acc_skill_algebraic_reasoning": 0.0,  # 5
            "acc_skill_arithmetic_reasoning": 3 / 4,  # 2, 104, 506, 852
            "acc_skill_geometry_reasoning": 0.0,  # 5
            "acc_skill_logical_reasoning": 1.0,  # 852
            "acc_skill_numeric_commonsense": 1.0,  # 2
            "acc_skill_statistical_reasoning": 1.0,  # 540
            "acc_task_figure_question_answering": 1.0,  # 104, 540
            "acc_task_geometry_problem_solving": 0.0,  # 5
            "acc_task_math_word_problem": 0.5,  # 506, 852
            "acc_task_visual_question_answering": 1.0,  # 2
        }
    )
    assert estimates["acc_skill_arithmetic_reasoning"].n == 4
    assert "acc_skill_scientific_reasoning" not in estimates  # no question with that skill
