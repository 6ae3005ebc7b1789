"""EgoSchema subset: prompt on a real MP4, lmms-eval's parser (its seeded random fallback
included), digit and letter answers, accuracy, and a missing video file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_lmms.scoring import strip_reasoning
from pytest_lmms.tasks import Task, load_task
from pytest_lmms.types import MediaPart, SampleResult
from tests.unit.video_fixtures import load_module, write_rows, write_video

pytest.importorskip("av")

EGOSCHEMA_YAML = Path(__file__).resolve().parents[2] / "benchmarks" / "egoschema" / "egoschema.yaml"
UTILS = load_module(EGOSCHEMA_YAML.with_name("utils.py"))
OPTIONS = [
    "A. c is cooking a meal.",
    "B. c is cleaning the kitchen.",
    "C. c is repairing a bicycle.",
    "D. c is painting a wall.",
    "E. c is reading a book.",
]
QUESTION = "What is the overarching goal of c's actions in the video?"


def row(question_idx: str, video_idx: str, answer: str) -> dict[str, Any]:
    return {
        "question_idx": question_idx,
        "question": QUESTION,
        "video_idx": video_idx,
        "option": OPTIONS,
        "answer": answer,
    }


@pytest.fixture
def egoschema(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Task:
    root = tmp_path / "egoschema"
    write_video(root / "videos" / "0074f737-11cb-497d.mp4")
    monkeypatch.setenv("EGOSCHEMA_DIR", str(root))
    rows = [
        row("0074f737-11cb-497d", "0074f737-11cb-497d", "1"),  # B, as the dataset stores it
        row("00b9a0de-c59e-49cb", "00b9a0de-c59e-49cb", "D"),  # a letter answer; no video file
    ]
    write_rows(tmp_path / "rows.jsonl", rows)
    (tmp_path / "fixture.yaml").write_text(
        f"include: {EGOSCHEMA_YAML}\ntask: egoschema_fixture\ndataset_path: rows.jsonl\n"
    )
    return load_task(tmp_path / "fixture.yaml")


def test_prompt_is_the_video_then_question_options_and_post_prompt(egoschema: Task, tmp_path: Path) -> None:
    (message,) = egoschema.request(egoschema.doc("0074f737-11cb-497d")).messages
    video = message.content[0]
    assert isinstance(video, MediaPart) and video.type == "video"
    assert video.media.path == tmp_path / "egoschema" / "videos" / "0074f737-11cb-497d.mp4"
    assert video.sampling is not None and video.sampling.num_frames == 32
    assert message.text == (
        "What is the overarching goal of c's actions in the video?\n"
        "A. c is cooking a meal.\nB. c is cleaning the kitchen.\nC. c is repairing a bicycle.\n"
        "D. c is painting a wall.\nE. c is reading a book.\n"
        "Answer with the option's letter from the given choices directly."
    )


@pytest.mark.parametrize(
    ("response", "letter"),
    [
        ("B", "B"),
        ("(B)", "B"),
        ("B.", "B"),
        ("B. c is cleaning the kitchen.", "B"),
        ("The best answer is C because the bicycle is on the stand...", "C"),
        ("A or B", "A"),  # several: the one whose last occurrence is first
        ("B, not A", "A"),  # "B," is no candidate form; "A " is
        ("(A) is wrong, (B) is right", "A"),
        ("b", None),  # lowercase letters are never read
        ("c is cleaning the kitchen", None),  # five words: too short for the option-text pass
        ("", None),
    ],
)
def test_parser_rules(response: str, letter: str | None) -> None:
    index2ans = dict(zip("ABCDE", OPTIONS, strict=True))
    assert UTILS.parse_multi_choice_response(response, index2ans) == letter


def test_option_text_counts_only_in_a_response_of_more_than_five_words() -> None:
    plain = {"A": "cooking a meal", "B": "cleaning the kitchen", "C": "repairing a bicycle"}
    assert UTILS.parse_multi_choice_response("I am sure that c is cleaning the kitchen", plain) == "B"
    # both texts occur: the one whose last occurrence comes first
    said = "c was cooking a meal, then cleaning the kitchen, then cooking a meal"
    assert UTILS.parse_multi_choice_response(said, plain) == "B"


def test_unparsed_answers_get_a_guess_seeded_by_the_question(egoschema: Task) -> None:
    doc = egoschema.doc("0074f737-11cb-497d")
    guess = UTILS.seeded_guess(doc, list("ABCDE"))
    assert guess == UTILS.seeded_guess(dict(doc), list("ABCDE"))  # the same on every call
    for unparsed in ("", "b", "no idea"):
        assert egoschema.score(doc, unparsed)["accuracy"] == float(guess == "B")


def test_digit_and_letter_answers(egoschema: Task) -> None:
    assert egoschema.score(egoschema.doc("0074f737-11cb-497d"), "B")["accuracy"] == 1.0
    assert egoschema.score(egoschema.doc("0074f737-11cb-497d"), "C")["accuracy"] == 0.0
    assert egoschema.score(egoschema.doc("00b9a0de-c59e-49cb"), "(D)")["accuracy"] == 1.0
    assert UTILS.answer_index("4") == 4 and UTILS.answer_index("e") == 4


def test_reasoning_is_stripped_before_parsing(egoschema: Task) -> None:
    doc = egoschema.doc("0074f737-11cb-497d")
    raw = "<think>A (cooking)? or C?</think>B"
    assert egoschema.score(doc, strip_reasoning(raw))["accuracy"] == 1.0
    assert egoschema.score(doc, raw)["accuracy"] == 0.0  # unstripped, the "A " of the reasoning comes first


def test_accuracy(egoschema: Task) -> None:
    answers = {"0074f737-11cb-497d": "B", "00b9a0de-c59e-49cb": "A"}
    results = [
        SampleResult("egoschema", doc_id, "", text, text, egoschema.score(egoschema.doc(doc_id), text))
        for doc_id, text in answers.items()
    ]
    estimate = egoschema.aggregate(results)["accuracy"]
    assert estimate.value == pytest.approx(0.5) and estimate.n == 2


def test_a_missing_video_is_named_when_its_media_is_read(egoschema: Task) -> None:
    request = egoschema.request(egoschema.doc("00b9a0de-c59e-49cb"))
    with pytest.raises(FileNotFoundError, match=r"videos/00b9a0de-c59e-49cb\.mp4"):
        request.media[0].read_bytes()


def test_the_task_reads_the_hub_subset() -> None:
    task = load_task(EGOSCHEMA_YAML)
    assert (task.spec.dataset_path, task.spec.dataset_name, task.spec.test_split) == (
        "lmms-lab/egoschema",
        "Subset",
        "test",
    )
