"""MathVista (testmini): the official query, answer extraction and scoring.

Prompt: the query the MathVista authors released (``data/query.json``, the hub's ``query``
column): a hint chosen by question/answer type, the question (with its unit), the lettered
choices. Scoring follows ``evaluation/extract_answer.py`` and ``calculate_score.py``: an
answer is extracted from the response, normalized per answer type (a choice by letter or
by edit distance, an integer, a float rounded to the question's precision, a list's text)
and compared with the answer string.

Extraction is rules first (the official quick rules, then "the answer is X", ``\\boxed{X}``,
a choice letter or text, the last number, the last ``[...]`` list); only when they read
nothing and a judge is given is the judge asked, with the official extraction prompt.
Without a judge, a multiple-choice response the rules cannot read is itself the extraction,
which the official normalization maps to the nearest choice by edit distance; any other
response the rules cannot read is wrong.
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Sequence
from typing import Any

from pytest_lmms.scoring import extract_choice, extract_number, extracted
from pytest_lmms.scoring.judge import JudgePrompt

SKILLS = (
    "algebraic reasoning",
    "arithmetic reasoning",
    "geometry reasoning",
    "logical reasoning",
    "numeric commonsense",
    "scientific reasoning",
    "statistical reasoning",
)
TASKS = (
    "figure question answering",
    "geometry problem solving",
    "math word problem",
    "textbook question answering",
    "visual question answering",
)

# the zero-shot "solution" hints of evaluation/build_query.py, by answer type (and precision)
HINT_MULTI_CHOICE = (
    "Hint: Please answer the question and provide the correct option letter, e.g., A, B, C, D, at the end."
)
HINT_INTEGER = (
    "Hint: Please answer the question requiring an integer answer and provide the final value, "
    "e.g., 1, 2, 3, at the end."
)
HINT_FLOAT = {
    1: "Hint: Please answer the question requiring a floating-point number with one decimal place "
    "and provide the final value, e.g., 1.2, 1.3, 1.4, at the end.",
    2: "Hint: Please answer the question requiring a floating-point number with two decimal places "
    "and provide the final value, e.g., 1.23, 1.34, 1.45, at the end.",
}
HINT_LIST = (
    "Hint: Please answer the question requiring a Python list as an answer and provide the final list, "
    "e.g., [1, 2, 3], [1.2, 1.3, 1.4], at the end."
)

# evaluation/prompts/ext_ans.py (demos: pids 852, 104, 824, 506, 540), completed as in
# extract_answer.create_test_prompt: demos, the query, the response, "Extracted answer: "
_EXTRACT_DEMOS = """Please read the following example. Then extract the answer from the model response and type it at the end of the prompt.

Hint: Please answer the question requiring an integer answer and provide the final value, e.g., 1, 2, 3, at the end.
Question: Which number is missing?

Model response: The number missing in the sequence is 14.

Extracted answer: 14

Hint: Please answer the question requiring a floating-point number with one decimal place and provide the final value, e.g., 1.2, 1.3, 1.4, at the end.
Question: What is the fraction of females facing the camera?

Model response: The fraction of females facing the camera is 0.6, which means that six out of ten females in the group are facing the camera.

Extracted answer: 0.6

Hint: Please answer the question requiring a floating-point number with two decimal places and provide the final value, e.g., 1.23, 1.34, 1.45, at the end.
Question: How much money does Luca need to buy a sour apple candy and a butterscotch candy? (Unit: $)

Model response: Luca needs $1.45 to buy a sour apple candy and a butterscotch candy.

Extracted answer: 1.45

Hint: Please answer the question requiring a Python list as an answer and provide the final list, e.g., [1, 2, 3], [1.2, 1.3, 1.4], at the end.
Question: Between which two years does the line  graph saw its maximum peak?

Model response: The line graph saw its maximum peak between 2007 and 2008.

Extracted answer: [2007, 2008]

Hint: Please answer the question and provide the correct option letter, e.g., A, B, C, D, at the end.
Question: What fraction of the shape is blue?
Choices:
(A) 3/11
(B) 8/11
(C) 6/11
(D) 3/5

Model response: The correct answer is (B) 8/11.

Extracted answer: B"""

EXTRACT_PROMPT = JudgePrompt(
    "mathvista_extract",
    _EXTRACT_DEMOS + "\n\n{query}\n\n{response}\n\nExtracted answer: ",
    max_new_tokens=256,
)


# --- prompt --------------------------------------------------------------------------------


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value)) and value != ""


def choices_of(doc: dict[str, Any]) -> list[str]:
    return [str(choice) for choice in doc["choices"]] if _present(doc.get("choices")) else []


def precision_of(doc: dict[str, Any]) -> int | None:
    # the hub stores precision as float64 (1.0); round() needs an int
    value = doc.get("precision")
    if value is None or not _present(value):
        return None
    return int(value)


def hint(doc: dict[str, Any]) -> str:
    question_type, answer_type = doc["question_type"], doc["answer_type"]
    if question_type == "multi_choice":
        return HINT_MULTI_CHOICE
    if answer_type == "integer":
        return HINT_INTEGER
    precision = precision_of(doc)
    if answer_type == "float" and precision is not None and precision in HINT_FLOAT:
        return HINT_FLOAT[precision]
    if answer_type == "list":
        return HINT_LIST
    # build_query.py has no hint for any other case either (it fails on them)
    raise ValueError(
        f"MathVista pid {doc.get('pid')!r}: no official hint for {question_type}/{answer_type} "
        f"with precision {doc.get('precision')!r}"
    )


def build_query(doc: dict[str, Any]) -> str:
    """The released query: hint, question (+ unit), then "Choices:" and "(A) ..." lines."""
    question = f"Question: {doc['question']}"
    if _present(doc.get("unit")):
        question += f" (Unit: {doc['unit']})"
    lines = [hint(doc), question]
    choices = choices_of(doc)
    if choices:
        lines.append("Choices:")
        lines += [f"({string.ascii_uppercase[i]}) {choice}" for i, choice in enumerate(choices)]
    return "\n".join(lines).strip()


def doc_to_messages(doc: dict[str, Any]) -> list[dict[str, Any]]:
    content = [{"type": "image", "image": doc["decoded_image"]}, {"type": "text", "text": build_query(doc)}]
    return [{"role": "user", "content": content}]


# --- extraction by rules -------------------------------------------------------------------

_ANSWER_IS = re.compile(r"answer\s*(?:is|:)\s*:?\s*(?P<value>[^\n]*)", re.IGNORECASE)
_BOXED = re.compile(r"\\boxed\{(?P<value>[^{}]*(?:\{[^{}]*\}[^{}]*)*)\}")
_LATEX_FRACTION = re.compile(r"\\d?frac\{([^{}]+)\}\{([^{}]+)\}")
# a number as pytest_lmms.scoring.extract_number reads it (sign, 1,000, 3.5, 1e-3, 1/2)
_NUMBER = re.compile(
    r"(?<![\w.])[-+\u2212]?(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|\.\d+)"
    r"(?:\s*/\s*\d+(?:\.\d+)?(?![\d/]))?"
)
# a Python list, not LaTeX display math "\[ ... \]"
_LIST = re.compile(r"(?<!\\)\[(?P<items>[^\[\]]*[^\[\]\s\\][^\[\]]*)\]")


def _clean(text: str) -> str:
    return text.replace("*", "").replace("$", "").strip().rstrip(".").strip().strip("\"'`").strip()


def final_answer(response: str) -> str | None:
    """What the response states as its answer: the last ``\\boxed{}``, else the text after the
    last "answer is" / "answer:" on its line."""
    boxed = list(_BOXED.finditer(response))
    if boxed:
        return _clean(boxed[-1].group("value"))
    stated = list(_ANSWER_IS.finditer(response))
    if stated:
        return _clean(stated[-1].group("value")) or None
    return None


def _numbers(text: str) -> list[float]:
    text = _LATEX_FRACTION.sub(r"\1/\2", text)
    values = [extract_number(match.group()) for match in _NUMBER.finditer(text)]
    return [value for value in values if value is not None and not math.isnan(value)]


def _choice_letter(response: str, choices: Sequence[str]) -> str | None:
    """The option a response picks: its stated answer, the line stating it, or its last line."""
    texts = []
    answer = final_answer(response)
    if answer:
        texts.append(answer)
    stated = list(_ANSWER_IS.finditer(response))
    if stated:
        start = response.rfind("\n", 0, stated[-1].start()) + 1
        end = response.find("\n", stated[-1].start())
        texts.append(response[start : end if end != -1 else len(response)])
    lines = [line for line in response.splitlines() if line.strip()]
    if lines:
        texts.append(lines[-1])
    for text in texts:
        letter = extract_choice(text, choices=choices)
        if letter is not None:
            return letter
    return None


def extract_by_rules(response: str, doc: dict[str, Any]) -> str | None:
    """The extracted answer (in the official extraction's terms: a choice letter, a number, a
    list's text), or None when no rule reads the response."""
    response = response.strip()
    if not response:
        return None
    question_type, answer_type = doc["question_type"], doc["answer_type"]
    if question_type == "multi_choice":
        choices = choices_of(doc)
        if response in choices:  # official quick rule
            return string.ascii_uppercase[choices.index(response)]
        return _choice_letter(response, choices)
    if answer_type in ("integer", "float"):
        try:  # official quick rule: the whole response is the number
            return str(int(response) if answer_type == "integer" else float(response))
        except ValueError:
            pass
        stated = final_answer(response)
        numbers = (_numbers(stated) if stated else []) or _numbers(response)[-1:]
        return repr(numbers[0]) if numbers else None
    if answer_type == "list":
        lists = list(_LIST.finditer(response))
        if not lists:
            return None
        items = [item.strip() for item in lists[-1].group("items").split(",")]
        return "[" + ", ".join(items) + "]"
    return final_answer(response)


# --- normalization and scoring (calculate_score.py) ----------------------------------------


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions of one character)."""
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b)))
        previous = current
    return previous[-1]


def most_similar(prediction: str, choices: Sequence[str]) -> str:
    """The choice at the smallest edit distance; the first one on a tie (get_most_similar)."""
    distances = [edit_distance(prediction, choice) for choice in choices]
    return choices[distances.index(min(distances))]


def normalize_extraction(extraction: str, doc: dict[str, Any]) -> str | None:
    """normalize_extracted_answer: the extraction in the answer column's terms, or None."""
    if doc["question_type"] == "multi_choice":
        choices = choices_of(doc)
        text = extraction.strip()
        bracketed = re.findall(r"\(([a-zA-Z])\)", text)  # "(B) 8/11" -> "B"
        if bracketed:
            text = bracketed[0].upper()
        letters = string.ascii_uppercase[: len(choices)]
        if len(text) == 1 and text in letters:
            return choices[letters.index(text)]
        return most_similar(text, choices)
    answer_type = doc["answer_type"]
    try:
        if answer_type == "integer":
            return str(int(float(extraction)))
        if answer_type == "float":
            return str(round(float(extraction), precision_of(doc) or 0))
    except (ValueError, OverflowError):
        return None
    return str(extraction)


def snake(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_")


def process_results(doc: dict[str, Any], response: str, judge: Any = None) -> dict[str, float]:
    extraction = extract_by_rules(response, doc)
    if extraction is None and judge is not None and response.strip():
        extraction = judge.ask(EXTRACT_PROMPT, query=build_query(doc), response=response.strip()).strip()
    if extraction is None and judge is None and doc["question_type"] == "multi_choice":
        # no judge to extract with: the response itself goes to the official normalization,
        # which maps text that is no option letter to the nearest choice ("6 cm" -> "6cm")
        extraction = response.strip()
    # an empty extraction is wrong (the official code would map it to the nearest choice)
    prediction = extracted(normalize_extraction(extraction, doc) if extraction else None)
    right = float(prediction is not None and prediction == str(doc["answer"]))
    scores = {"accuracy": right}
    metadata = doc.get("metadata") or {}
    for skill in metadata.get("skills") or ():
        scores[f"acc_skill_{snake(skill)}"] = right
    if metadata.get("task"):
        scores[f"acc_task_{snake(metadata['task'])}"] = right
    return scores
