"""MMMU's answer rules, shared by the benchmarks that score the MMMU way (MMMU, Video-MMMU).

Follows the official MMMU code, MMMU-Benchmark/MMMU ``eval/eval_utils.py``
(``parse_multi_choice_response``, ``get_key_subresponses`` inside ``parse_open_response``,
``extract_numbers``, ``check_is_number``, ``normalize_str``, ``eval_open``) and
``eval/data_utils.py`` (``DOMAIN_CAT2SUB_CAT``, here :data:`DISCIPLINES`), and lmms-eval's
copy of it for Video-MMMU, ``lmms_eval/tasks/videommmu/utils.py``. Where lmms-eval's copy
reads answers differently, a keyword names its variant:

- ``lenient_letters=True`` (:func:`find_choice`): lmms-eval's letter passes, "B." and "B:"
  first, then "(B)", then "B " (no space needed before the letter);
- ``extended_indicators=True`` (:func:`key_subresponses`, :func:`parse_open_response`):
  lmms-eval's longer list of conclusion phrases ("are ", "in total ", "equals ", "has ", ...).

One change from the official code: where it picks a random letter for an unreadable
multiple-choice answer, :func:`fallback_choice` seeds the pick with the question id, so a run
scores the same every time (lmms-eval's Video-MMMU copy picks nothing: use
:func:`find_choice`, which returns None).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Sequence
from typing import Any

from pytest_lmms.scoring._extracted import extracted
from pytest_lmms.scoring._metrics import seeded_choice

__all__ = [
    "DISCIPLINES",
    "EXTENDED_KEY_INDICATORS",
    "KEY_INDICATORS",
    "eval_open",
    "extract_numbers",
    "fallback_choice",
    "find_choice",
    "gold_answers",
    "key_subresponses",
    "letters_for",
    "normalize_str",
    "parse_multi_choice",
    "parse_open_response",
]

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
"""The official DOMAIN_CAT2SUB_CAT: 6 disciplines, 30 subjects."""

# ---- multiple choice ------------------------------------------------------------------------

_EDGE_PUNCTUATION = (",", ".", "!", "?", ";", ":", "'")


def letters_for(options: Sequence[str]) -> list[str]:
    """ "A", "B", ... one per option, as the official get_multi_choice_info names them."""
    return [chr(ord("A") + index) for index in range(len(options))]


def find_choice(response: str, options: Sequence[str], *, lenient_letters: bool = False) -> str | None:
    """The option letter the rules read in ``response``, or None (no random pick here).

    The response is stripped of , . ! ? ; : ' at its ends and padded with one space at each
    end. In order, the first pass with any candidate decides:

    - only with ``lenient_letters`` (lmms-eval's Video-MMMU): letters written "B." and those
      written "B:" (both searches run; the last is located by the "B." form when any letter
      has one, else by "B:");
    - a bracketed letter "(B)";
    - an uppercase letter between spaces " B " (so "B." and "B" alone count once the end
      punctuation is gone); with ``lenient_letters``, any "B " (located by " B ");
    - only when the response has more than 5 whitespace tokens, an option's text inside it
      (case-insensitive).

    Several candidates: the one occurring last in the response (the first listed on a tie).
    """
    letters = letters_for(options)
    for char in _EDGE_PUNCTUATION:
        response = response.strip(char)
    padded = f" {response} "

    if lenient_letters:
        with_period = [letter for letter in letters if f"{letter}." in padded]
        with_colon = [letter for letter in letters if f"{letter}:" in padded]
        if with_period or with_colon:
            mark = "." if with_period else ":"
            return _last(with_period + with_colon, lambda letter: padded.rfind(letter + mark))
    bracketed = [letter for letter in letters if f"({letter})" in padded]
    if bracketed:
        return _last(bracketed, lambda letter: padded.rfind(f"({letter})"))
    spaced_form = "{} " if lenient_letters else " {} "
    spaced = [letter for letter in letters if spaced_form.format(letter) in padded]
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


def fallback_choice(question_id: str, options: Sequence[str]) -> str:
    """The official random pick among the option letters, seeded from sha256 of the question
    id (``seeded_choice`` with the "int64" seed): the same id always gets the same letter."""
    return seeded_choice(question_id, letters_for(options), digest_seed="int64")


def parse_multi_choice(response: str, options: Sequence[str], question_id: str) -> str | None:
    """The official parse_multi_choice_response: the letter :func:`find_choice` reads, else the
    seeded pick. None only for a question without options."""
    if not options:
        return None
    return extracted(find_choice(response, options) or fallback_choice(question_id, options))


# ---- open questions -------------------------------------------------------------------------

_NUMBER_WITH_COMMAS = re.compile(r"-?\b\d{1,3}(?:,\d{3})+\b")
_NUMBER_SCIENTIFIC = re.compile(r"-?\d+(?:\.\d+)?[eE][+-]?\d+")
_NUMBER_SIMPLE = re.compile(r"-?(?:\d+\.\d+|\.\d+|\d+\b)(?![eE][+-]?\d+)(?![,\d])")
_SENTENCE_OR_LINE = re.compile(r"\.\s(?=[A-Z])|\n")
_TRIVIAL_TAILS = frozenset((":", ",", ".", "!", "?", ";", "'"))

KEY_INDICATORS = ("could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result ")
"""The official conclusion phrases of get_key_subresponses."""
EXTENDED_KEY_INDICATORS = KEY_INDICATORS + (
    "are ",
    "in total ",
    "total ",
    "identify ",
    "recognize ",
    "calculated as ",
    "counted as ",
    "measured as ",
    "observed as ",
    "concluded as ",
    "found to be ",
    "equals ",
    "determined to be ",
    "number of ",
    "value is ",
    "adds up to ",
    "have ",
    "has ",
)
"""lmms-eval's Video-MMMU list: the official phrases and 18 more."""


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


def key_subresponses(response: str, *, extended_indicators: bool = False) -> list[str]:
    """The official get_key_subresponses: per line, the shortest tail after a conclusion
    phrase (:data:`KEY_INDICATORS`, or :data:`EXTENDED_KEY_INDICATORS` with
    ``extended_indicators``, and "=" on the last line); the whole lower-cased response when
    no line has one. The official code lower-cases before splitting, so its sentence split
    (". " before a capital) never fires and only newlines split."""
    text = response.strip().strip(".").lower()
    pieces = _SENTENCE_OR_LINE.split(text)
    phrases = EXTENDED_KEY_INDICATORS if extended_indicators else KEY_INDICATORS
    keys = []
    for index, piece in enumerate(pieces):
        indicators = phrases + ("=",) if index == len(pieces) - 1 else phrases
        shortest: str | None = None
        for indicator in indicators:
            if indicator in piece:
                tail = piece.split(indicator)[-1].strip()
                if not shortest or len(tail) < len(shortest):
                    shortest = tail
        if shortest and shortest.strip() not in _TRIVIAL_TAILS:
            keys.append(shortest)
    return keys or [text]


def parse_open_response(response: str, *, extended_indicators: bool = False) -> list[str | float]:
    """The official candidate answers: the key tails and the numbers in them, normalized, each
    once, in order of first appearance (the official code's set has no order)."""
    keys = key_subresponses(response, extended_indicators=extended_indicators)
    candidates = keys + [number for key in keys for number in extract_numbers(key)]
    normalized = [value for candidate in candidates for value in normalize_str(candidate)]
    return extracted(list(dict.fromkeys(normalized)))


def gold_answers(answer: Any) -> list[str]:
    """The accepted answers: MMMU writes several as a list literal, "['24', '24.0']"."""
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


def eval_open(gold: str | Sequence[str], predictions: Sequence[str | float]) -> bool:
    """The official eval_open: a numeric prediction must equal a numeric gold (both rounded to
    2 decimals); a text prediction is right when a text gold occurs inside it. ``gold`` is one
    answer or a list of accepted ones (a string is never read as a list literal here: see
    :func:`gold_answers`)."""
    golds = [gold] if isinstance(gold, str) else list(gold)
    accepted = [value for answer in golds for value in normalize_str(str(answer))]
    for prediction in predictions:
        if isinstance(prediction, str):
            if any(isinstance(answer, str) and answer in prediction for answer in accepted):
                return True
        elif prediction in accepted:
            return True
    return False
