"""MMMU: college-level questions on up to 7 images, scored as the official MMMU code scores them.

Official code: MMMU-Benchmark/MMMU ``eval/eval_utils.py`` (``parse_multi_choice_response``,
``parse_open_response``, ``extract_numbers``, ``normalize_str``, ``eval_multi_choice``,
``eval_open``) and ``eval/data_utils.py`` (``DOMAIN_CAT2SUB_CAT``); the answer rules live in
``pytest_lmms.scoring.mmmu`` (the official variant: no ``lenient_letters``, the official key
phrases). The prompt text is the one lmms-eval uses; images are interleaved at their
``<image n>`` placeholders. One change: when no option can be read from a multiple-choice
answer, the official random pick is seeded from the question id (sha256), so a run scores the
same every time.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Sequence
from typing import Any

# the official answer rules; those only tests call are re-exported ("x as x") for them
from pytest_lmms.scoring.mmmu import (
    DISCIPLINES,
    eval_open,
    find_choice,
    gold_answers,
    parse_multi_choice,
    parse_open_response,
)
from pytest_lmms.scoring.mmmu import extract_numbers as extract_numbers
from pytest_lmms.scoring.mmmu import fallback_choice as fallback_choice
from pytest_lmms.scoring.mmmu import key_subresponses as key_subresponses
from pytest_lmms.scoring.mmmu import normalize_str as normalize_str

MC_PROMPT = "Answer with the option's letter from the given choices directly."
OPEN_PROMPT = "Answer the question using a single word or phrase."

DISCIPLINE_OF = {subject: discipline for discipline, subjects in DISCIPLINES.items() for subject in subjects}

_PLACEHOLDER = re.compile(r"<image (\d+)>")
_QUESTION_ID = re.compile(r"^[^_]+_(.+)_\d+$")  # "validation_Art_Theory_3" -> "Art_Theory"


# ---- prompt ---------------------------------------------------------------------------------


def is_multiple_choice(doc: dict[str, Any]) -> bool:
    return str(doc.get("question_type")) == "multiple-choice"


def options_of(doc: dict[str, Any]) -> list[str]:
    """The options: the dataset stores them as a Python list literal in a string."""
    value = doc.get("options")
    if value is None:
        return []
    if isinstance(value, str):
        value = ast.literal_eval(value) if value.strip() else []
    return [str(option) for option in value]


def prompt_text(doc: dict[str, Any]) -> str:
    """lmms-eval's prompt: the question, "A. option" lines and the instruction (MC), or the
    question and the short-answer instruction (open); ``<image n>`` placeholders still in it."""
    question = str(doc["question"])
    if not is_multiple_choice(doc):
        return f"{question}\n\n{OPEN_PROMPT}"
    lines = "\n".join(f"{chr(ord('A') + index)}. {option}" for index, option in enumerate(options_of(doc)))
    return f"{question}\n{lines}\n\n{MC_PROMPT}"


def doc_to_messages(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The prompt with each ``<image n>`` (in the question or an option) replaced by image_n.

    An image named twice is sent at each place it is named, so no reference is left without
    its picture. A placeholder whose image column is empty stays as text. Text between
    placeholders is kept verbatim; pieces that are only whitespace are dropped.
    """
    content: list[dict[str, Any]] = []
    text = ""
    cursor = 0
    prompt = prompt_text(doc)
    for match in _PLACEHOLDER.finditer(prompt):
        image = doc.get(f"image_{match.group(1)}")
        if image is None:
            continue  # left in the text, which runs on to the next placeholder
        text += prompt[cursor : match.start()]
        if text.strip():
            content.append({"type": "text", "text": text})
        content.append({"type": "image", "image": image})
        text, cursor = "", match.end()
    text += prompt[cursor:]
    if text.strip():
        content.append({"type": "text", "text": text})
    return [{"role": "user", "content": content}]


# ---- scoring --------------------------------------------------------------------------------


def is_correct(doc: dict[str, Any], response: str) -> bool:
    golds = gold_answers(doc["answer"])
    if is_multiple_choice(doc):
        return parse_multi_choice(response, options_of(doc), str(doc["id"])) in golds
    return eval_open(golds, parse_open_response(response))


def subject_of(question_id: str) -> str:
    """The subject named in an id such as "validation_Art_Theory_3"."""
    match = _QUESTION_ID.match(question_id)
    if match is None or match.group(1) not in DISCIPLINE_OF:
        raise ValueError(f"MMMU id {question_id!r} does not name one of the 30 subjects")
    return match.group(1)


def discipline_metric(discipline: str) -> str:
    """ "Health and Medicine" -> "acc_health_and_medicine"."""
    return "acc_" + discipline.lower().replace(" ", "_")


def process_results(doc: dict[str, Any], response: str) -> dict[str, float]:
    """0/1 under ``accuracy`` and under the question's discipline and subject rows, whose
    means are the official per-discipline and per-subject (instance-level) accuracies."""
    subject = subject_of(str(doc["id"]))
    right = float(is_correct(doc, response))
    return {
        "accuracy": right,
        discipline_metric(DISCIPLINE_OF[subject]): right,
        f"acc_{subject}": right,
    }


# ---- test split: hidden answers, submission file --------------------------------------------


def submission_target(doc: dict[str, Any]) -> str:
    """What the submission needs from the question, kept in each result's target (JSON)."""
    return json.dumps({"question_type": doc["question_type"], "options": options_of(doc)})


def process_test_results(doc: dict[str, Any], response: str) -> dict[str, float]:
    """Answers are hidden: ``answered`` is 1 when an option was read without the random
    pick (multiple choice), or when the response is not empty (open)."""
    if is_multiple_choice(doc):
        answered = find_choice(response, options_of(doc)) is not None
    else:
        answered = bool(response.strip())
    return {"answered": float(answered)}


def submission(results: Sequence[Any]) -> dict[str, str]:
    """The official submission: {id: option letter} for multiple choice (the seeded pick when
    none is read, as the official pipeline submits its random pick), {id: response} for open
    questions (the server parses those). With repeats, each question's lowest repeat."""
    answers: dict[str, str] = {}
    for result in sorted(results, key=lambda r: r.repeat):
        if result.doc_id in answers:
            continue
        target = json.loads(result.target)
        if target["question_type"] == "multiple-choice":
            answers[result.doc_id] = (
                parse_multi_choice(result.response, target["options"], result.doc_id) or ""
            )
        else:
            answers[result.doc_id] = result.response
    return answers
