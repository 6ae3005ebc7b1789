"""Metric registry, answer normalization, option-letter extraction, the seeded fallback pick and
the built-in metrics."""

from __future__ import annotations

import hashlib
import math
import operator
import random
import re
import string
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar

from pytest_lmms.scoring._extracted import extracted

Metric = Callable[..., float]
"""A metric: ``fn(prediction: str, target: Any, **kwargs) -> float``."""

F = TypeVar("F", bound=Metric)

_REGISTRY: dict[str, Metric] = {}


def metric(name: str) -> Callable[[F], F]:
    """Register the decorated function as the metric called ``name``.

    Registering the same function twice (a re-imported module) is allowed; registering a
    different function under a taken name raises ``ValueError`` rather than silently replacing
    a metric that results files already refer to.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"metric name must be a non-empty string, got {name!r}")

    def register(fn: F) -> F:
        existing = _REGISTRY.get(name)
        if existing is not None and _qualified_name(existing) != _qualified_name(fn):
            raise ValueError(f"metric {name!r} is already registered to {_qualified_name(existing)}")
        _REGISTRY[name] = fn
        return fn

    return register


def _qualified_name(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def get_metric(name: str) -> Metric:
    """Return the metric registered as ``name``.

    Raises:
        ValueError: naming the unknown metric and listing the known ones.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(available_metrics()) or "(none)"
        raise ValueError(f"unknown metric {name!r}; known metrics: {known}") from None


def available_metrics() -> list[str]:
    """The names of all registered metrics, sorted."""
    return sorted(_REGISTRY)


# --- normalization -------------------------------------------------------------------------

_BRACKET_PAIRS = {"(": ")", "[": "]", "{": "}", "<": ">"}
_QUOTES = {'"': '"', "'": "'", "`": "`", "\u201c": "\u201d", "\u2018": "\u2019"}
_TRAILING_PUNCTUATION = ".,;:!"
_WHITESPACE_RUN = re.compile(r"\s+")


def normalize_answer(text: str) -> str:
    """Normalize an answer for comparison.

    Casefolds, collapses inner whitespace runs to one space, and repeatedly strips surrounding
    whitespace, trailing punctuation (``. , ; : !``) and one pair of surrounding quotes or
    brackets (only when the opening character's match is the last character, so ``"(a) or
    (b)"`` is left alone), until nothing changes: ``' "(Paris)." '`` -> ``"paris"``.
    """
    text = _WHITESPACE_RUN.sub(" ", text.casefold()).strip()
    while True:
        before = text
        text = text.rstrip(_TRAILING_PUNCTUATION).strip()
        if len(text) >= 2 and _is_wrapped(text):
            text = text[1:-1].strip()
        if text == before:
            return text


def _is_wrapped(text: str) -> bool:
    first, last = text[0], text[-1]
    if first in _QUOTES:
        return _QUOTES[first] == last
    closing = _BRACKET_PAIRS.get(first)
    if closing is None or last != closing:
        return False
    depth = 0
    for index, char in enumerate(text):
        if char == first:
            depth += 1
        elif char == closing:
            depth -= 1
            if depth == 0:
                return index == len(text) - 1
    return False


# --- option letters ------------------------------------------------------------------------

_MARKDOWN = re.compile(r"[*`]")
# "answer is B", "Answer: (b)", "the correct answer is option C." The letter must be
# bracketed, uppercase, or end its token with '.', ')', ':' or the text, so "the answer is a
# cat" does not read as option A.
_ANSWER_INTRO = re.compile(
    r"(?i:\banswer\s*(?:is\s*:?|:)\s*(?:(?:option|choice)\s+)?)"
    r"(?:[(\[{]\s*(?P<bracketed>[A-Za-z])\s*[)\]}]"
    r"|(?P<upper>[A-Z])(?![\w'])"
    r"|(?P<any>[A-Za-z])(?=[.):](?!\w)|\s*$))",
)
_BRACKETED_LETTER = re.compile(r"[(\[{]\s*([A-Za-z])\s*[)\]}]")
_PUNCTUATED_LETTER = re.compile(r"(?:^|(?<=\s))([A-Za-z])(?:[.):](?!\w)|\s*$)")
_LEADING_CAPITAL = re.compile(r"^([B-HJ-Z])\s")


def extract_choice(
    text: str, n_choices: int | None = None, choices: Sequence[str] | None = None
) -> str | None:
    """Return the option letter (``"A"``, ``"B"``, ...) a free-form answer picks, or ``None``.

    Valid letters run from ``A`` to the ``n_choices``-th letter (``len(choices)`` when only
    ``choices`` is given, all 26 when neither is); letters outside that range are ignored.
    Markdown marks (asterisks and backticks) are removed first, so ``**B**`` reads as ``B``.
    Letters are case-insensitive and returned uppercase. Rules, in order:

    1. Explicit answer: a letter introduced by ``answer is`` / ``Answer:`` (optionally
       ``option``/``choice``, optionally bracketed) wins; if there are several, the last one
       (a model's final word after reconsidering). After the intro a lowercase letter must be
       bracketed or end its token, so "the answer is a cat" picks nothing.
    2. Standalone options: a letter counts only when it is bracketed (``(B)``, ``[B]``,
       ``{B}``), or a whole token followed by ``.``, ``)``, ``:`` (not continuing into a word,
       so "e.g." does not count) or the end of the text (``B``, ``B.``, ``b)``, ``...is C``),
       or an uppercase letter other than ``A`` and ``I`` opening the text (``B is correct``).
       ``A`` and ``I`` at the start followed by a word are English words ("A cat sits"), not
       options. One distinct letter -> that letter; several distinct letters -> ``None``
       (ambiguous).
    3. Choice text: with no letter at all, if the normalized text equals the normalized text
       of exactly one choice, that choice's letter.

    Empty text, or text that matches none of the rules, gives ``None``.
    """
    limit = _choice_count(n_choices, choices)
    cleaned = _MARKDOWN.sub("", text).strip()
    if not cleaned:
        return None

    def in_range(letter: str) -> str | None:
        upper = letter.upper()
        return upper if ord(upper) - ord("A") < limit else None

    explicit = [
        in_range(m.group("bracketed") or m.group("upper") or m.group("any"))
        for m in _ANSWER_INTRO.finditer(cleaned)
    ]
    explicit = [letter for letter in explicit if letter is not None]
    if explicit:
        return explicit[-1]

    candidates = {
        in_range(m.group(1))
        for pattern in (_BRACKETED_LETTER, _PUNCTUATED_LETTER, _LEADING_CAPITAL)
        for m in pattern.finditer(cleaned)
    }
    candidates.discard(None)
    if len(candidates) == 1:
        return candidates.pop()
    if candidates:
        return None

    if choices:
        normalized = normalize_answer(cleaned)
        matches = [
            string.ascii_uppercase[index]
            for index, choice in enumerate(choices[:limit])
            if normalize_answer(str(choice)) == normalized
        ]
        if len(matches) == 1:
            return matches[0]
    return None


def _choice_count(n_choices: int | None, choices: Sequence[str] | None) -> int:
    if n_choices is not None:
        if not 1 <= n_choices <= 26:
            raise ValueError(f"n_choices must be between 1 and 26, got {n_choices}")
        return n_choices
    if choices is not None:
        if not 1 <= len(choices) <= 26:
            raise ValueError(f"choices must hold between 1 and 26 options, got {len(choices)}")
        return len(choices)
    return 26


def seeded_choice(key: str, choices: Sequence[str], *, digest_seed: Literal["hex", "int64"] = "hex") -> str:
    """A pick from ``choices`` that depends only on ``key``: the "choose at random when no
    answer is found" of MMMU-style parsers, made repeatable.

    ``random.Random`` is seeded from the sha256 of ``key`` (UTF-8), never from ``hash()``,
    which changes with PYTHONHASHSEED. ``digest_seed`` says how the digest becomes the seed:
    ``"hex"`` its hex string (EgoSchema, LongVideoBench), ``"int64"`` the big-endian integer
    of its first 8 bytes (MMMU). The two give different picks; each benchmark keeps the one
    its tests pin. Empty ``choices`` raise ``IndexError``, as ``random.choice`` does.
    """
    digest = hashlib.sha256(key.encode("utf-8"))
    if digest_seed == "hex":
        seed: int | str = digest.hexdigest()
    elif digest_seed == "int64":
        seed = int.from_bytes(digest.digest()[:8], "big")
    else:
        raise ValueError(f"digest_seed must be 'hex' or 'int64', got {digest_seed!r}")
    return random.Random(seed).choice(choices)


# --- numbers -------------------------------------------------------------------------------

_NUMBER = re.compile(
    r"(?<![\w.])(?P<sign>[-+\u2212]?)"
    r"(?P<value>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|\.\d+)"
    r"(?:\s*/\s*(?P<denominator>\d+(?:\.\d+)?)(?![\d/]))?"
)


def extract_number(text: str) -> float | None:
    """The first number in ``text``, or ``None``.

    Handles thousands separators (``"1,000"`` -> 1000), units and percent signs after the
    number (``"3.50 m"`` -> 3.5, ``"12%"`` -> 12), signs (``"-2"``, also U+2212 minus),
    exponents (``"1e-3"``) and simple fractions (``"1/2"`` -> 0.5; a zero denominator gives
    NaN, which matches nothing).
    """
    match = _NUMBER.search(text)
    if match is None:
        return None
    value = float(match.group("value").replace(",", ""))
    denominator = match.group("denominator")
    if denominator is not None:
        divisor = float(denominator)
        value = value / divisor if divisor else math.nan
    return -value if match.group("sign") in ("-", "\u2212") else value


# --- built-in metrics ----------------------------------------------------------------------


def _targets(target: Any) -> list[Any]:
    return list(target) if isinstance(target, list | tuple | set | frozenset) else [target]


@metric("exact_match")
def exact_match(prediction: str, target: Any, **kwargs: Any) -> float:
    """1.0 when the normalized prediction equals a normalized target (a list: any of them)."""
    predicted = extracted(normalize_answer(prediction))
    return float(any(predicted == normalize_answer(str(t)) for t in _targets(target)))


@metric("contains")
def contains(prediction: str, target: Any, **kwargs: Any) -> float:
    """1.0 when a normalized target occurs in the normalized prediction as a whole word/phrase.

    An empty target never matches.
    """
    predicted = normalize_answer(prediction)
    for t in _targets(target):
        wanted = normalize_answer(str(t))
        if wanted and re.search(rf"(?<!\w){re.escape(wanted)}(?!\w)", predicted):
            return 1.0
    return 0.0


@metric("choice_accuracy")
def choice_accuracy(
    prediction: str,
    target: Any,
    *,
    choices: Sequence[str] | None = None,
    n_choices: int | None = None,
    **kwargs: Any,
) -> float:
    """1.0 when the option picked by the prediction (:func:`extract_choice`) is the target.

    The target is a letter (``"B"``, ``"(b)"``) or a 0-based index. An unreadable target is bad
    data and raises ``ValueError``.
    """
    picked = extracted(extract_choice(prediction, n_choices=n_choices, choices=choices))
    return float(picked is not None and picked == _target_letter(target))


def _target_letter(target: Any) -> str:
    if not isinstance(target, str | bool):
        try:
            index = operator.index(target)
        except TypeError:
            pass
        else:
            if 0 <= index < 26:
                return string.ascii_uppercase[index]
            raise ValueError(f"choice index {index} is out of range")
    if isinstance(target, str):
        letter = target.strip().strip("()[]{}.").strip()
        if len(letter) == 1 and letter.isascii() and letter.isalpha():
            return letter.upper()
    raise ValueError(f"choice target must be a letter or a 0-based index, got {target!r}")


@metric("number_match")
def number_match(prediction: str, target: Any, *, tolerance: float = 1e-6, **kwargs: Any) -> float:
    """1.0 when the first number in the prediction equals the target within ``tolerance``.

    ``tolerance`` is relative (``math.isclose``'s ``rel_tol``). A target list matches any of
    its members; a string target that ``float()`` rejects (``"1,000"``) is read with
    :func:`extract_number`. No number in the prediction gives 0.0.
    """
    predicted = extracted(extract_number(prediction))
    if predicted is None:
        return 0.0
    return float(any(math.isclose(predicted, _target_number(t), rel_tol=tolerance) for t in _targets(target)))


def _target_number(target: Any) -> float:
    try:
        return float(target)
    except (TypeError, ValueError):
        number = extract_number(target) if isinstance(target, str) else None
        if number is None:
            raise ValueError(f"number_match target is not a number: {target!r}") from None
        return number
