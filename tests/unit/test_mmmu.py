"""MMMU: interleaved prompt, the official answer parsers, per-discipline / per-subject rows,
the test-split submission."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from PIL import Image

from pytest_lmms.scoring import strip_reasoning
from pytest_lmms.tasks import load_task
from pytest_lmms.tasks._task import Task
from pytest_lmms.types import MediaPart, SampleResult, TextPart

MMMU_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "mmmu"
VAL_YAML = MMMU_DIR / "mmmu_val.yaml"
TEST_YAML = MMMU_DIR / "mmmu_test.yaml"
COLORS = {"red.png": (255, 0, 0), "green.png": (0, 255, 0), "blue.png": (0, 0, 255)}
PAINTERS = "['Claude Monet', 'Pablo Picasso', 'Vincent van Gogh', 'Salvador Dali']"


def load_utils() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mmmu_utils", MMMU_DIR / "utils.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


utils = load_utils()


def row(question_id: str, question: str, answer: str, options: str = "[]", **images: str) -> dict[str, Any]:
    """A row in lmms-lab/MMMU's schema; images given as image_n="file.png"."""
    data: dict[str, Any] = {
        "id": question_id,
        "question": question,
        "options": options,
        "explanation": "",
        "img_type": "['Diagrams']",
        "answer": answer,
        "topic_difficulty": "Medium",
        "question_type": "multiple-choice" if options != "[]" else "open",
        "subfield": "",
    }
    for n in range(1, 8):
        name = images.get(f"image_{n}")
        data[f"image_{n}"] = None if name is None else {"bytes": None, "path": name}
    return data


VAL_ROWS = [
    row(
        "validation_Art_Theory_3",
        "Compare <image 1> and <image 2>. Which painting is older?",
        "A",
        "['The left one', 'The right one', 'Both are from 1900']",
        image_1="red.png",
        image_2="green.png",
    ),
    row(
        "validation_Math_7",
        "<image 1> What is the area of the triangle, in m^2?",
        "24",
        image_1="blue.png",
        image_2="red.png",  # named by no placeholder: not sent
    ),
    row(
        "validation_Design_2",
        "Which logo matches <image 1>? Look at <image 1> closely.",
        "B",
        "['<image 2>', '<image 3>']",
        image_1="red.png",
        image_2="blue.png",  # image_3 is missing: its placeholder stays text
    ),
    row("validation_Art_1", "Who painted <image 1>?", "B", PAINTERS, image_1="green.png"),
    row("validation_Finance_10", "What is the profit?", "1000"),
    row("validation_Physics_4", "How long is the rod?", "3.5"),
    row("validation_Math_12", "What is the probability?", "1/2"),
    row("validation_Math_13", "What is the ratio?", "0.5"),
    row("validation_Math_20", "What is 6 x 7?", "42"),
    row("validation_Electronics_26", "What is the voltage?", "['24', '24.0']"),
    row("validation_Geography_4", "Which city is shown?", "['Tampa', 'Florida']"),
    row("validation_Chemistry_5", "Which compound is shown?", "Benzene"),
    row("validation_Energy_and_Power_3", "How much energy, in J?", "1500"),
]
TEST_ROWS = [
    row("test_Art_1", "Who painted <image 1>?", "?", PAINTERS, image_1="green.png"),
    row("test_Math_3", "What is 6 x 7?", "?"),
    row("test_Music_1", "Which instrument plays <image 1>?", "?", PAINTERS, image_1="red.png"),
]


def write_task(folder: Path, rows: list[dict[str, Any]], base: Path, name: str) -> Task:
    for file, color in COLORS.items():
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8), color).save(buffer, format="PNG")
        (folder / file).write_bytes(buffer.getvalue())
    with open(folder / f"{name}.jsonl", "w") as handle:
        for data in rows:
            handle.write(json.dumps(data) + "\n")
    (folder / f"{name}.yaml").write_text(f"include: {base}\ntask: {name}\ndataset_path: {name}.jsonl\n")
    return load_task(folder / f"{name}.yaml")


# module-scoped: the tasks are only read, and building them per test is most of the run time
@pytest.fixture(scope="module")
def mmmu(tmp_path_factory: pytest.TempPathFactory) -> Task:
    return write_task(tmp_path_factory.mktemp("val"), VAL_ROWS, VAL_YAML, "mmmu_fixture")


@pytest.fixture(scope="module")
def mmmu_test(tmp_path_factory: pytest.TempPathFactory) -> Task:
    return write_task(tmp_path_factory.mktemp("test"), TEST_ROWS, TEST_YAML, "mmmu_test_fixture")


def sha(file: str, task: Task) -> str:
    return hashlib.sha256((task.spec.folder / file).read_bytes()).hexdigest()


def layout(task: Task, doc_id: str) -> list[tuple[str, str]]:
    """The request's parts in order: ("text", text) or ("image", sha256 of its bytes)."""
    (message,) = task.request(task.doc(doc_id)).messages
    parts = []
    for part in message.content:
        if isinstance(part, TextPart):
            parts.append(("text", part.text))
        else:
            assert isinstance(part, MediaPart) and part.type == "image"
            parts.append(("image", part.media.content_hash))
    return parts


# ---- prompt ---------------------------------------------------------------------------------


def test_multiple_choice_prompt_interleaves_both_images(mmmu: Task) -> None:
    assert layout(mmmu, "validation_Art_Theory_3") == [
        ("text", "Compare "),
        ("image", sha("red.png", mmmu)),
        ("text", " and "),
        ("image", sha("green.png", mmmu)),
        (
            "text",
            ". Which painting is older?\nA. The left one\nB. The right one\nC. Both are from 1900\n\n"
            "Answer with the option's letter from the given choices directly.",
        ),
    ]
    assert mmmu.request(mmmu.doc("validation_Art_Theory_3")).messages[0].text == (
        "Compare  and . Which painting is older?\nA. The left one\nB. The right one\n"
        "C. Both are from 1900\n\nAnswer with the option's letter from the given choices directly."
    )


def test_open_prompt(mmmu: Task) -> None:
    assert layout(mmmu, "validation_Math_7") == [
        ("image", sha("blue.png", mmmu)),
        (
            "text",
            " What is the area of the triangle, in m^2?\n\nAnswer the question using a single word or phrase.",
        ),
    ]


def test_images_in_options_repeated_and_missing(mmmu: Task) -> None:
    red, blue = sha("red.png", mmmu), sha("blue.png", mmmu)
    assert layout(mmmu, "validation_Design_2") == [
        ("text", "Which logo matches "),
        ("image", red),
        ("text", "? Look at "),
        ("image", red),  # named twice: sent at both places
        ("text", " closely.\nA. "),
        ("image", blue),  # an option that is an image
        ("text", "\nB. <image 3>\n\nAnswer with the option's letter from the given choices directly."),
    ]


def test_metric_list_has_overall_six_disciplines_and_thirty_subjects(mmmu: Task) -> None:
    subjects = [s for group in utils.DISCIPLINES.values() for s in group]
    assert len(utils.DISCIPLINES) == 6 and len(set(subjects)) == 30
    assert mmmu.metric_names[0] == "accuracy"
    assert set(mmmu.metric_names) == {
        "accuracy",
        "acc_art_and_design",
        "acc_business",
        "acc_science",
        "acc_health_and_medicine",
        "acc_humanities_and_social_science",
        "acc_tech_and_engineering",
        *(f"acc_{s}" for s in subjects),
    }
    assert len(mmmu.metric_names) == 37
    assert mmmu.spec.cluster_key is None


def test_subject_comes_from_the_id() -> None:
    assert utils.subject_of("validation_Art_Theory_3") == "Art_Theory"
    assert (
        utils.subject_of("test_Diagnostics_and_Laboratory_Medicine_12")
        == "Diagnostics_and_Laboratory_Medicine"
    )
    with pytest.raises(ValueError, match="validation_Cooking_1"):
        utils.subject_of("validation_Cooking_1")


# ---- multiple choice ------------------------------------------------------------------------

OPTIONS = ["Claude Monet", "Pablo Picasso", "Vincent van Gogh", "Salvador Dali"]
FALLBACK = "A"  # the seeded pick for validation_Art_1 with 4 options (pinned)


@pytest.mark.parametrize(
    ("response", "letter"),
    [
        ("(B)", "B"),
        ("B", "B"),
        ("B.", "B"),  # the end '.' is stripped, then " B " matches
        ("The answer is C because the brushwork is loose.", "C"),
        ("I think it was painted by Pablo Picasso in his blue period", "B"),  # > 5 tokens: option text
        ("Pablo Picasso", FALLBACK),  # option text counts only in responses over 5 tokens
        ("A or B? I would say B", "B"),  # several letters: the last one
        ("(A) is wrong and (C) is right", "C"),  # several bracketed letters: the last one
        ("(D) Salvador Dali, not B", "D"),  # a bracketed letter outranks a bare one
        ("b", FALLBACK),  # the official rules are case-sensitive
        ("D. Salvador Dali", FALLBACK),  # "D." inside the text is no official pattern; 3 tokens
        ("", FALLBACK),
        ("I cannot tell who painted this picture.", FALLBACK),
    ],
)
def test_official_multiple_choice_parsing(response: str, letter: str) -> None:
    assert utils.parse_multi_choice(response, OPTIONS, "validation_Art_1") == letter


def test_only_the_random_pick_is_not_an_answer() -> None:
    assert utils.find_choice("(B)", OPTIONS) == "B"
    assert utils.find_choice("b", OPTIONS) is None


def test_multiple_choice_scores(mmmu: Task) -> None:
    doc = mmmu.doc("validation_Art_1")  # answer B, Art (Art and Design)
    assert mmmu.score(doc, "(B)") == {"accuracy": 1.0, "acc_art_and_design": 1.0, "acc_Art": 1.0}
    assert mmmu.score(doc, "The answer is C because...") == {
        "accuracy": 0.0,
        "acc_art_and_design": 0.0,
        "acc_Art": 0.0,
    }


def test_answer_after_a_reasoning_block(mmmu: Task) -> None:
    doc = mmmu.doc("validation_Art_1")
    raw = "<think>Option (C) looks tempting, but the style is cubist.</think>B"
    assert mmmu.score(doc, strip_reasoning(raw))["accuracy"] == 1.0
    assert mmmu.score(doc, raw)["accuracy"] == 0.0  # unstripped, the "(C)" would win


def test_fallback_is_seeded_by_the_id() -> None:
    letters = {utils.fallback_choice(f"validation_Art_{n}", OPTIONS) for n in range(1, 40)}
    assert letters == {"A", "B", "C", "D"}  # the id drives the pick
    assert utils.fallback_choice("validation_Art_1", OPTIONS) == FALLBACK
    assert utils.parse_multi_choice("no idea", OPTIONS, "validation_Art_1") == FALLBACK  # same twice


@pytest.mark.parametrize("hash_seed", ["0", "12345"])
def test_fallback_does_not_depend_on_pythonhashseed(hash_seed: str) -> None:
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('u', {str(MMMU_DIR / 'utils.py')!r})\n"
        "u = importlib.util.module_from_spec(spec); spec.loader.exec_module(u)\n"
        f"print(u.parse_multi_choice('no idea', {OPTIONS!r}, 'validation_Art_1'))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == FALLBACK


# ---- open questions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc_id", "response", "right"),
    [
        ("validation_Finance_10", "1,000", 1.0),  # thousands separator
        ("validation_Finance_10", "$1,000", 1.0),
        ("validation_Finance_10", "1000 dollars", 1.0),
        ("validation_Finance_10", "100", 0.0),
        ("validation_Physics_4", "3.50 m", 1.0),  # unit after the number
        ("validation_Physics_4", "The length is 3.50 m.", 1.0),
        ("validation_Physics_4", "3.499", 1.0),  # numbers compare rounded to 2 decimals
        ("validation_Physics_4", "3.45 m", 0.0),
        ("validation_Math_12", "1/2", 1.0),  # a fraction matches as text only
        ("validation_Math_12", "0.5", 0.0),
        ("validation_Math_13", "1/2", 0.0),  # the official code does not evaluate fractions
        ("validation_Math_13", "0.5", 1.0),
        ("validation_Math_20", "The answer is 42.", 1.0),
        ("validation_Math_20", "The answer is 42 because 6 x 7 = 42", 1.0),
        ("validation_Math_20", "It is 4.2", 0.0),
        ("validation_Math_7", "24", 1.0),
        ("validation_Electronics_26", "24.0 V", 1.0),  # answer list literal: any of them
        ("validation_Electronics_26", "24", 1.0),
        ("validation_Electronics_26", "25", 0.0),
        ("validation_Geography_4", "Tampa, Florida", 1.0),
        ("validation_Geography_4", "It is in Florida.", 1.0),
        ("validation_Geography_4", "Miami", 0.0),
        ("validation_Chemistry_5", "benzene", 1.0),  # word answers: case-insensitive containment
        ("validation_Chemistry_5", "The compound is Benzene.", 1.0),
        ("validation_Chemistry_5", "Toluene", 0.0),
        ("validation_Energy_and_Power_3", "1.5e3 J", 1.0),  # scientific notation
        ("validation_Energy_and_Power_3", "15000 J", 0.0),
        ("validation_Energy_and_Power_3", "", 0.0),
    ],
)
def test_open_answers(mmmu: Task, doc_id: str, response: str, right: float) -> None:
    assert mmmu.score(mmmu.doc(doc_id), response)["accuracy"] == right


def test_open_parsing_follows_the_official_functions() -> None:
    assert utils.extract_numbers("1,000 and 3.50 m, 1.2e-3") == ["1,000", "1.2e-3", "000", "3.50", "1", "-3"]
    assert utils.normalize_str(" 1,000 ") == [1000.0]
    assert utils.normalize_str("X") == [" x", "x "]
    assert utils.parse_open_response("So the result is 3.5 m") == ["3.5 m", 3.5]
    assert utils.key_subresponses("Step one.\nThus x = 4") == ["4"]
    assert utils.gold_answers("['24', '24.0']") == ["24", "24.0"]
    assert utils.gold_answers("[1, 2] apples") == ["[1, 2] apples"]


# ---- aggregation ----------------------------------------------------------------------------

# responses and whether each is right, by hand from the official rules
RUN = {
    "validation_Art_Theory_3": "A",  # right
    "validation_Art_1": "C",  # wrong
    "validation_Design_2": "B",  # right
    "validation_Math_7": "24",  # right
    "validation_Math_12": "0.5",  # wrong
    "validation_Math_13": "0.5",  # right
    "validation_Math_20": "42",  # right
    "validation_Physics_4": "3.50 m",  # right
    "validation_Chemistry_5": "Toluene",  # wrong
    "validation_Geography_4": "Tampa",  # right
    "validation_Finance_10": "1,000",  # right
    "validation_Electronics_26": "25",  # wrong
    "validation_Energy_and_Power_3": "1.5e3 J",  # right
}


def results_of(task: Task, responses: dict[str, str], repeat: int = 0) -> list[SampleResult]:
    out = []
    for doc_id, response in responses.items():
        doc = task.doc(doc_id)
        out.append(
            SampleResult(
                task=task.name,
                doc_id=doc_id,
                target=task.target(doc),
                response=response,
                raw=response,
                scores=task.score(doc, response),
                cluster_id=task.cluster_id(doc),
                repeat=repeat,
            )
        )
    return out


def test_accuracy_per_discipline_and_subject(mmmu: Task) -> None:
    estimates = mmmu.aggregate(results_of(mmmu, RUN))
    expected = {
        "accuracy": (9 / 13, 13),
        "acc_art_and_design": (2 / 3, 3),
        "acc_Art_Theory": (1.0, 1),
        "acc_Art": (0.0, 1),
        "acc_Design": (1.0, 1),
        "acc_science": (5 / 7, 7),
        "acc_Math": (3 / 4, 4),
        "acc_Physics": (1.0, 1),
        "acc_Chemistry": (0.0, 1),
        "acc_Geography": (1.0, 1),
        "acc_business": (1.0, 1),
        "acc_Finance": (1.0, 1),
        "acc_tech_and_engineering": (1 / 2, 2),
        "acc_Electronics": (0.0, 1),
        "acc_Energy_and_Power": (1.0, 1),
    }
    assert {name: (e.value, e.n) for name, e in estimates.items()} == {
        name: (pytest.approx(value), n) for name, (value, n) in expected.items()
    }
    # no question of these in the run: no row
    assert "acc_health_and_medicine" not in estimates and "acc_Music" not in estimates


# ---- test split -----------------------------------------------------------------------------


def test_test_split_scores_whether_an_answer_was_read(mmmu_test: Task) -> None:
    assert mmmu_test.score(mmmu_test.doc("test_Art_1"), "(C)") == {"answered": 1.0}
    assert mmmu_test.score(mmmu_test.doc("test_Art_1"), "no idea") == {"answered": 0.0}
    assert mmmu_test.score(mmmu_test.doc("test_Math_3"), "42") == {"answered": 1.0}
    assert mmmu_test.score(mmmu_test.doc("test_Math_3"), "  ") == {"answered": 0.0}


def test_submission_holds_letters_and_open_responses(mmmu_test: Task) -> None:
    responses = {"test_Art_1": "(C)", "test_Math_3": "The answer is 42.", "test_Music_1": "no idea"}
    results = results_of(mmmu_test, {"test_Art_1": "(D)"}, repeat=1) + results_of(mmmu_test, responses)
    assert json.loads(results[0].target) == {"question_type": "multiple-choice", "options": OPTIONS}
    content = mmmu_test.submission(results)
    assert content == {
        "test_Art_1": "C",  # the first repeat's answer, not the (D) of repeat 1
        "test_Math_3": "The answer is 42.",  # open: the response, parsed by the server
        "test_Music_1": "B",  # the seeded pick for this id (pinned), as the official code submits one
    }
    assert json.loads(json.dumps(content)) == content
    assert mmmu_test.aggregate(results_of(mmmu_test, responses))["answered"].value == pytest.approx(2 / 3)
