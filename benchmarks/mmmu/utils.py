"""MMMU: college-level questions on up to 7 images, scored as the official MMMU code scores them.

Official code: MMMU-Benchmark/MMMU ``eval/eval_utils.py`` (``parse_multi_choice_response``,
``parse_open_response``, ``extract_numbers``, ``normalize_str``, ``eval_multi_choice``,
``eval_open``) and ``eval/data_utils.py`` (``DOMAIN_CAT2SUB_CAT``). The prompt text is the one
lmms-eval uses; images are interleaved at their ``<image n>`` placeholders. One change: when no
option can be read from a multiple-choice answer, the official random pick is seeded from the
question id (sha256), so a run scores the same every time.
"""

from __future__ import annotations

import ast
import hashlib
import json
import random
import re
from collections.abc import Callable, Sequence
from typing import Any

MC_PROMPT = "Answer with the option's letter from the given choices directly."
OPEN_PROMPT = "Answer the question using a single word or phrase."

# the official DOMAIN_CAT2SUB_CAT: 6 disciplines, 30 subjects
DISCIPLINES: dict[str, tuple[str, ...]] = {
    "Art and Design": ("Art", "Art_Theory", "Design", "Music"),
    "Business": ("Accounting", "Economics", "Finance", "Manage", "Marketing"),
    "Science": ("Biology", "Chemistry", "Geography", "Math", "Physics"),
    "Health and Medicine": (
        "Basic_Medical_Science",
        "Clinical_Medicine",
        "Diagnostics_and_Laboratory_Medicine",
        "Pharmacy",
        "Public_Health",
    ),
    "Humanities and Social Science": ("History", "Literature", "Sociology", "Psychology"),
    "Tech and Engineering": (
        "Agriculture",
        "Architecture_and_Engineering",
        "Computer_Science",
        "Electronics",
        "Energy_and_Power",
        "Materials",
        "Mechanical_Engineering",
    ),
}
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


# ---- multiple choice: the official parse_multi_choice_response --------------------------------

_EDGE_PUNCTUATION = (",", ".", "!", "?", ";", ":", "'")


def letters_for(options: Sequence[str]) -> list[str]:
    return [chr(ord("A") + index) for index in range(len(options))]


def find_choice(response: str, options: Sequence[str]) -> str | None:
    """The option letter the official rules read in ``response``, or None (no random pick).

    In order, the first rule with any candidate decides: a bracketed letter "(B)"; an
    uppercase letter between spaces (the response is padded with one space at each end,
    after stripping , . ! ? ; : ' from its ends, so "B." and "B" count); and, only when the
    response has more than 5 whitespace tokens, an option's text inside it (case-insensitive).
    Several candidates: the one occurring last in the response (the first listed on a tie).
    """
    letters = letters_for(options)
    for char in _EDGE_PUNCTUATION:
        response = response.strip(char)
    padded = f" {response} "

    bracketed = [letter for letter in letters if f"({letter})" in padded]
    if bracketed:
        return _last(bracketed, lambda letter: padded.rfind(f"({letter})"))
    spaced = [letter for letter in letters if f" {letter} " in padded]
    if spaced:
        return _last(spaced, lambda letter: padded.rfind(f" {letter} "))
    if len(padded.split()) > 5:
        lowered = padded.lower()
        text_of = dict(zip(letters, options, strict=True))
        named = [letter for letter in letters if text_of[letter].lower() in lowered]
        if named:
            return _last(named, lambda letter: lowered.rfind(text_of[letter].lower()))
    return None


def _last(candidates: list[str], position: Callable[[str], int]) -> str:
    # max() keeps the first of equal positions, as the official np.argmax does
    return max(candidates, key=position)


def fallback_choice(doc_id: str, options: Sequence[str]) -> str:
    """The official code's random pick, seeded from sha256 of the question id (not hash(),
    which changes with PYTHONHASHSEED): the same id always gets the same letter."""
    seed = int.from_bytes(hashlib.sha256(doc_id.encode("utf-8")).digest()[:8], "big")
    return random.Random(seed).choice(letters_for(options))


def parse_multi_choice(response: str, options: Sequence[str], doc_id: str) -> str | None:
    """The option letter for ``response``; the seeded pick when the rules find none. None
    only for a question without options."""
    if not options:
        return None
    return find_choice(response, options) or fallback_choice(doc_id, options)


# ---- open questions: the official parse_open_response and eval_open ---------------------------

_NUMBER_WITH_COMMAS = re.compile(r"-?\b\d{1,3}(?:,\d{3})+\b")
_NUMBER_SCIENTIFIC = re.compile(r"-?\d+(?:\.\d+)?[eE][+-]?\d+")
_NUMBER_SIMPLE = re.compile(r"-?(?:\d+\.\d+|\.\d+|\d+\b)(?![eE][+-]?\d+)(?![,\d])")
_KEY_INDICATORS = ("could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result ")
_TRIVIAL_TAILS = {":", ",", ".", "!", "?", ";", "'"}


def extract_numbers(text: str) -> list[str]:
    """Every number written in ``text``, as the official three patterns find them, in their
    order: with thousands separators ("1,000"), in scientific notation ("1.2e-3"), plain
    ("3.50", "-2", ".5"). A fraction "1/2" gives its two integers, not 0.5."""
    return _NUMBER_WITH_COMMAS.findall(text) + _NUMBER_SCIENTIFIC.findall(text) + _NUMBER_SIMPLE.findall(text)


def _as_number(text: str) -> float | None:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def normalize_str(text: str) -> list[str | float]:
    """The official normalize_str: a number (commas dropped) rounded to 2 decimals, else the
    lower-cased text; a one-character text as " x" and "x " so it matches only a whole word."""
    text = text.strip()
    number = _as_number(text)
    if number is not None:
        return [round(number, 2)]
    lowered = text.lower()
    if len(lowered) == 1:
        return [" " + lowered, lowered + " "]
    return [lowered]


def key_subresponses(response: str) -> list[str]:
    """The official get_key_subresponses: per line, the shortest tail after an indicator
    ("is ", "answer ", "therefore ", ... and "=" on the last line); the whole lower-cased
    response when no line has one. The official code lower-cases before splitting, so its
    sentence split (". " before a capital) never fires and only newlines split."""
    text = response.strip().strip(".").lower()
    pieces = re.split(r"\.\s(?=[A-Z])|\n", text)
    keys = []
    for index, piece in enumerate(pieces):
        indicators = _KEY_INDICATORS + ("=",) if index == len(pieces) - 1 else _KEY_INDICATORS
        shortest: str | None = None
        for indicator in indicators:
            if indicator in piece:
                tail = piece.split(indicator)[-1].strip()
                if not shortest or len(tail) < len(shortest):
                    shortest = tail
        if shortest and shortest.strip() not in _TRIVIAL_TAILS:
            keys.append(shortest)
    return keys or [text]


def parse_open_response(response: str) -> list[str | float]:
    """The official candidate answers: the key tails and the numbers in them, normalized."""
    keys = key_subresponses(response)
    candidates = keys + [number for key in keys for number in extract_numbers(key)]
    normalized = [value for candidate in candidates for value in normalize_str(candidate)]
    return list(dict.fromkeys(normalized))


def gold_answers(answer: Any) -> list[str]:
    """The accepted answers: the dataset writes several as a list literal, "['24', '24.0']"."""
    if isinstance(answer, (list, tuple)):
        return [str(item).strip() for item in answer]
    text = str(answer).strip()
    if text.startswith("[") and text.endswith("]"):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = None
        if isinstance(value, list):
            return [str(item).strip() for item in value]
    return [text]


def open_correct(golds: Sequence[str], predictions: Sequence[str | float]) -> bool:
    """The official eval_open: a numeric prediction must equal a numeric gold (both rounded
    to 2 decimals); a text prediction is right when a text gold occurs inside it."""
    accepted = [value for gold in golds for value in normalize_str(gold)]
    for prediction in predictions:
        if isinstance(prediction, str):
            if any(isinstance(gold, str) and gold in prediction for gold in accepted):
                return True
        elif prediction in accepted:
            return True
    return False


# ---- scoring --------------------------------------------------------------------------------


def is_correct(doc: dict[str, Any], response: str) -> bool:
    golds = gold_answers(doc["answer"])
    if is_multiple_choice(doc):
        return parse_multi_choice(response, options_of(doc), str(doc["id"])) in golds
    return open_correct(golds, parse_open_response(response))


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
