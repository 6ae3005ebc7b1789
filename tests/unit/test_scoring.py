"""Tests for pytest_lmms.scoring: reasoning stripping, answer parsing and the built-in metrics."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

import pytest_lmms.scoring as scoring
from pytest_lmms.scoring import (
    DEFAULT_REASONING_TAGS,
    _metrics,
    available_metrics,
    extract_choice,
    extract_number,
    get_metric,
    metric,
    normalize_answer,
    parse_reasoning_tags,
    strip_reasoning,
)


@pytest.fixture
def isolated_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Metrics registered by a test vanish after it."""
    monkeypatch.setattr(_metrics, "_REGISTRY", dict(_metrics._REGISTRY))


def test_public_api_is_explicit() -> None:
    assert sorted(scoring.__all__) == sorted(
        [
            "DEFAULT_REASONING_TAGS",
            "Judge",
            "JudgeError",
            "JudgePrompt",
            "Metric",
            "Recording",
            "WordAlignment",
            "align_words",
            "available_metrics",
            "corpus_wer",
            "extract_choice",
            "extract_number",
            "extracted",
            "get_metric",
            "metric",
            "normalize_answer",
            "normalize_basic",
            "normalize_english",
            "parse_reasoning_tags",
            "recording_extracted",
            "seeded_choice",
            "standardize_numbers",
            "standardize_spellings",
            "strip_reasoning",
            "word_error_rate",
            "word_errors",
        ]
    )
    for name in scoring.__all__:
        assert hasattr(scoring, name)


# --- strip_reasoning -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("<think>hmm</think>B", "B", id="complete-block"),
        pytest.param("<think>hmm</think>  The answer is B.  ", "The answer is B.", id="whitespace"),
        pytest.param("<think>a</think>one <think>b</think>two", "one two", id="multiple-blocks"),
        pytest.param("<think>\nline 1\nline 2\n</think>\n\nParis", "Paris", id="multiline"),
        pytest.param("Intro <think>x</think> outro", "Intro  outro", id="block-in-middle"),
        pytest.param("Paris <think>wait, let me", "Paris", id="unclosed-open-after-answer"),
        pytest.param("<think>still reasoning when cut", "", id="unclosed-open-only"),
        pytest.param("reasoning\n</think>\n\nB", "B", id="close-only-qwen3"),
        pytest.param("r1</think>mid</think> final", "final", id="close-only-last-close"),
        pytest.param("r</think>a<think>b</think>c", "c", id="orphan-close-then-block"),
        pytest.param("<think>a<think>b</think>c</think>d", "d", id="nested"),
        pytest.param("<thinking>x</thinking>A", "A", id="thinking-tag"),
        pytest.param("<reasoning>x</reasoning>A", "A", id="reasoning-tag"),
        pytest.param("<|begin_of_thought|>x<|end_of_thought|>A", "A", id="thought-tag"),
        pytest.param("<think>x</think><reasoning>y</reasoning>C", "C", id="mixed-tags"),
        pytest.param("<THINK>x</THINK>A", "<THINK>x</THINK>A", id="case-sensitive"),
        pytest.param("  plain answer \n", "plain answer", id="no-tags"),
        pytest.param("", "", id="empty"),
        pytest.param("a < b and c > d", "a < b and c > d", id="angle-brackets-not-tags"),
    ],
)
def test_strip_reasoning_default_tags(text: str, expected: str) -> None:
    assert strip_reasoning(text) == expected


@pytest.mark.parametrize(
    ("text", "tags", "expected"),
    [
        pytest.param("[R]x[/R]answer", (("[R]", "[/R]"),), "answer", id="custom-pair"),
        pytest.param("[R]x[/R]answer", [["[R]", "[/R]"]], "answer", id="custom-pair-lists"),
        pytest.param("x[/R] answer", (("[R]", "[/R]"),), "answer", id="custom-close-only"),
        pytest.param("<think>x</think>A", (("[R]", "[/R]"),), "<think>x</think>A", id="other-tags"),
        pytest.param(" <think>x</think>A ", (), "<think>x</think>A", id="disabled"),
    ],
)
def test_strip_reasoning_custom_tags(text: str, tags: Any, expected: str) -> None:
    assert strip_reasoning(text, tags) == expected


def test_strip_reasoning_with_parsed_tags() -> None:
    tags = parse_reasoning_tags("reasoning")
    assert strip_reasoning("<think>x</think><reasoning>y</reasoning>B", tags) == ("<think>x</think>B")


# --- parse_reasoning_tags ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param(None, DEFAULT_REASONING_TAGS, id="none-means-default"),
        pytest.param("", (), id="empty-disables"),
        pytest.param("none", (), id="none-string"),
        pytest.param(" None ", (), id="none-any-case"),
        pytest.param("off", (), id="off"),
        pytest.param([], (), id="empty-list"),
        pytest.param("think", (("<think>", "</think>"),), id="bare-name"),
        pytest.param(
            "think, reasoning",
            (("<think>", "</think>"), ("<reasoning>", "</reasoning>")),
            id="bare-names",
        ),
        pytest.param("<think>", (("<think>", "</think>"),), id="angle-name"),
        pytest.param("<a>:</b>", (("<a>", "</b>"),), id="pair"),
        pytest.param(
            "<|begin_of_thought|>:<|end_of_thought|>",
            (("<|begin_of_thought|>", "<|end_of_thought|>"),),
            id="pair-with-pipes",
        ),
        pytest.param("[R]:[/R]", (("[R]", "[/R]"),), id="pair-non-angle"),
        pytest.param("think,<a>:</b>", (("<think>", "</think>"), ("<a>", "</b>")), id="mixed-string"),
        pytest.param([["<think>", "</think>"]], (("<think>", "</think>"),), id="yaml-pairs"),
        pytest.param((("<a>", "</a>"),), (("<a>", "</a>"),), id="tuple-pairs"),
        pytest.param(["think", "<x>:</y>"], (("<think>", "</think>"), ("<x>", "</y>")), id="yaml-strs"),
        pytest.param("think,think", (("<think>", "</think>"),), id="deduplicated"),
    ],
)
def test_parse_reasoning_tags(spec: Any, expected: tuple[tuple[str, str], ...]) -> None:
    assert parse_reasoning_tags(spec) == expected


@pytest.mark.parametrize(
    ("spec", "offending"),
    [
        pytest.param("think,", "think,", id="trailing-comma"),
        pytest.param("a:b:c", "a:b:c", id="three-part-pair"),
        pytest.param("<a>:", "<a>:", id="empty-close"),
        pytest.param("<a>:<a>", "<a>:<a>", id="same-open-close"),
        pytest.param("two words", "two words", id="spaces-in-name"),
        pytest.param("<think", "<think", id="unbalanced-angle"),
        pytest.param([["<a>"]], "['<a>']", id="one-element-pair"),
        pytest.param([["<a>", "</a>", "<b>"]], "'<b>'", id="three-element-pair"),
        pytest.param([3], "3", id="not-a-string"),
        pytest.param(42, "42", id="not-a-sequence"),
    ],
)
def test_parse_reasoning_tags_errors(spec: Any, offending: str) -> None:
    with pytest.raises(ValueError, match="reasoning tag") as excinfo:
        parse_reasoning_tags(spec)
    assert offending in str(excinfo.value)


# --- normalize_answer ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Paris", "paris"),
        ("  Paris  ", "paris"),
        ("Paris.", "paris"),
        ("Paris!;:,", "paris"),
        ('"Paris"', "paris"),
        ("'Paris.'", "paris"),
        ("\u201cParis\u201d", "paris"),
        ("(B)", "b"),
        ("[B].", "b"),
        ("{x}", "x"),
        ("New   York\n City", "new york city"),
        ("(a) or (b)", "(a) or (b)"),
        ("STRASSE", "strasse"),
        ("Straße", "strasse"),
        ("3.5", "3.5"),
        ("what?", "what?"),
        ("", ""),
        ("...", ""),
    ],
)
def test_normalize_answer(text: str, expected: str) -> None:
    assert normalize_answer(text) == expected


# --- extract_choice ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("B", "B", id="bare"),
        pytest.param("(B)", "B", id="parenthesized"),
        pytest.param("B.", "B", id="dot"),
        pytest.param("b)", "B", id="lowercase-paren"),
        pytest.param("[B]", "B", id="square-brackets"),
        pytest.param("B:", "B", id="colon"),
        pytest.param("Answer: B", "B", id="answer-colon"),
        pytest.param("answer: (d)", "D", id="answer-colon-bracketed"),
        pytest.param("The answer is B because it is red.", "B", id="answer-is-because"),
        pytest.param("The correct answer is: C", "C", id="answer-is-colon"),
        pytest.param("The answer is option D.", "D", id="answer-is-option"),
        pytest.param("THE ANSWER IS b.", "B", id="answer-is-lowercase-dot"),
        pytest.param("**B**", "B", id="bold"),
        pytest.param("The answer is **C**.", "C", id="answer-bold"),
        pytest.param("`A`", "A", id="code"),
        pytest.param("b", "B", id="lowercase-bare"),
        pytest.param("  C  ", "C", id="whitespace"),
        pytest.param("B is correct", "B", id="leading-capital"),
        pytest.param("B. Paris, because it is the capital.", "B", id="letter-then-text"),
        pytest.param("I think it is (C)", "C", id="pronoun-i-then-bracket"),
        pytest.param("I would pick D.", "D", id="pronoun-i-then-letter"),
        pytest.param("Option A", "A", id="letter-at-end"),
        pytest.param("B. Because option A is wrong", "B", id="prose-letter-not-counted"),
    ],
)
def test_extract_choice_styles(text: str, expected: str) -> None:
    assert extract_choice(text, n_choices=4) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("   ", id="blank"),
        pytest.param("A cat sits on the mat", id="article-a"),
        pytest.param("I don't know", id="pronoun-i"),
        pytest.param("The answer is a cat", id="answer-is-article"),
        pytest.param("e.g. this one", id="abbreviation"),
        pytest.param("(A) or (B)", id="ambiguous-brackets"),
        pytest.param("A. because B) is wrong", id="ambiguous-punctuated"),
        pytest.param("A) red B) blue C) green", id="echoed-options"),
        pytest.param("E", id="out-of-range"),
        pytest.param("(E)", id="out-of-range-bracketed"),
        pytest.param("The answer is E.", id="out-of-range-answer"),
        pytest.param("Paris", id="no-letter-no-choices"),
        pytest.param("Bx", id="not-standalone"),
    ],
)
def test_extract_choice_none(text: str) -> None:
    assert extract_choice(text, n_choices=4) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("(A) or (B)? The answer is B.", "B", id="answer-intro-breaks-tie"),
        pytest.param("A. no... Answer: C", "C", id="answer-colon-breaks-tie"),
        pytest.param("The answer is A. Wait, the answer is C.", "C", id="last-intro-wins"),
        pytest.param("The answer is E, so answer: B", "B", id="out-of-range-intro-ignored"),
    ],
)
def test_extract_choice_explicit_answer_wins(text: str, expected: str) -> None:
    assert extract_choice(text, n_choices=4) == expected


CHOICES = ["London", "Paris", "New York", "Berlin"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("Paris", "B", id="exact-text"),
        pytest.param("  paris. ", "B", id="normalized-text"),
        pytest.param('"New  York"', "C", id="quoted-text"),
        pytest.param("D", "D", id="letter-still-works"),
        pytest.param("(A) Berlin", "A", id="letter-beats-text"),
        pytest.param("Rome", None, id="unknown-text"),
        pytest.param("Paris is nice", None, id="text-must-be-whole"),
    ],
)
def test_extract_choice_choice_text(text: str, expected: str | None) -> None:
    assert extract_choice(text, choices=CHOICES) == expected


def test_extract_choice_range_from_choices() -> None:
    assert extract_choice("C", choices=["x", "y"]) is None
    assert extract_choice("B", choices=["x", "y"]) == "B"


def test_extract_choice_defaults_to_all_letters() -> None:
    assert extract_choice("(J)") == "J"


@pytest.mark.parametrize("n_choices", [0, 27])
def test_extract_choice_bad_n_choices(n_choices: int) -> None:
    with pytest.raises(ValueError, match="n_choices"):
        extract_choice("A", n_choices=n_choices)


# --- extract_number ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("42", 42.0),
        ("1,000", 1000.0),
        ("It costs 1,234,567.5 dollars", 1234567.5),
        ("3.50 m", 3.5),
        ("-2", -2.0),
        ("\u22122", -2.0),
        ("+7", 7.0),
        ("1/2", 0.5),
        ("3 / 4 cup", 0.75),
        ("12%", 12.0),
        (".5", 0.5),
        ("1e-3", 0.001),
        ("The answer is 17 apples and 3 pears", 17.0),
        ("x2 then 5", 5.0),
    ],
)
def test_extract_number(text: str, expected: float) -> None:
    assert extract_number(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["", "no digits here", "abc."])
def test_extract_number_none(text: str) -> None:
    assert extract_number(text) is None


def test_extract_number_zero_denominator_is_nan() -> None:
    value = extract_number("1/0")
    assert value is not None and math.isnan(value)


# --- registry ------------------------------------------------------------------------------


def test_builtin_metrics_registered() -> None:
    assert {"exact_match", "contains", "choice_accuracy", "number_match"} <= set(available_metrics())
    assert available_metrics() == sorted(available_metrics())


def test_get_metric_unknown_name() -> None:
    with pytest.raises(ValueError, match="unknown metric 'nope'") as excinfo:
        get_metric("nope")
    for name in ("exact_match", "contains", "choice_accuracy", "number_match"):
        assert name in str(excinfo.value)


@pytest.mark.usefixtures("isolated_registry")
def test_register_custom_metric() -> None:
    @metric("length_ratio")
    def length_ratio(prediction: str, target: Any, **kwargs: Any) -> float:
        return len(prediction) / len(str(target))

    assert get_metric("length_ratio") is length_ratio
    assert "length_ratio" in available_metrics()
    assert get_metric("length_ratio")("ab", "abcd") == 0.5


@pytest.mark.usefixtures("isolated_registry")
def test_register_conflicting_name_raises() -> None:
    with pytest.raises(ValueError, match="already registered"):

        @metric("exact_match")
        def other(prediction: str, target: Any, **kwargs: Any) -> float:
            return 0.0


@pytest.mark.usefixtures("isolated_registry")
def test_registering_same_function_twice_is_allowed() -> None:
    def scorer(prediction: str, target: Any, **kwargs: Any) -> float:
        return 1.0

    assert metric("twice")(scorer) is scorer
    assert metric("twice")(scorer) is scorer


@pytest.mark.parametrize("name", ["", "   "])
def test_metric_name_must_be_non_empty(name: str) -> None:
    with pytest.raises(ValueError, match="non-empty"):
        metric(name)


# --- built-in metrics ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prediction", "target", "expected"),
    [
        ("Paris", "Paris", 1.0),
        (" paris. ", "Paris", 1.0),
        ('"PARIS"', "paris", 1.0),
        ("Paris, France", "Paris", 0.0),
        ("London", "Paris", 0.0),
        ("Lyon", ["Paris", "Lyon"], 1.0),
        ("Nice", ["Paris", "Lyon"], 0.0),
        ("42", 42, 1.0),
        ("yes", ("Yes", "yeah"), 1.0),
        ("", "", 1.0),
    ],
)
def test_exact_match(prediction: str, target: Any, expected: float) -> None:
    assert get_metric("exact_match")(prediction, target) == expected


@pytest.mark.parametrize(
    ("prediction", "target", "expected"),
    [
        ("The capital is Paris.", "Paris", 1.0),
        ("It is in New  York city", "new york", 1.0),
        ("Parisian food", "Paris", 0.0),
        ("a cat", "cat", 1.0),
        ("concatenate", "cat", 0.0),
        ("London", "Paris", 0.0),
        ("I saw a dog", ["cat", "dog"], 1.0),
        ("I saw a bird", ["cat", "dog"], 0.0),
        ("anything", "", 0.0),
        ("costs 3.5 dollars", 3.5, 1.0),
    ],
)
def test_contains(prediction: str, target: Any, expected: float) -> None:
    assert get_metric("contains")(prediction, target) == expected


@pytest.mark.parametrize(
    ("prediction", "target", "kwargs", "expected"),
    [
        ("B", "B", {}, 1.0),
        ("(b)", "B", {}, 1.0),
        ("The answer is C.", "C", {"n_choices": 4}, 1.0),
        ("C", "B", {}, 0.0),
        ("B", 1, {}, 1.0),
        ("B", np.int64(1), {}, 1.0),
        ("A", 1, {}, 0.0),
        ("B", "(B)", {}, 1.0),
        ("b", " b ", {}, 1.0),
        ("Paris", "B", {"choices": CHOICES}, 1.0),
        ("Paris", 1, {"choices": CHOICES}, 1.0),
        ("Rome", "B", {"choices": CHOICES}, 0.0),
        ("E", "E", {"choices": CHOICES}, 0.0),
        ("(A) or (B)", "A", {}, 0.0),
        ("", "A", {}, 0.0),
    ],
)
def test_choice_accuracy(prediction: str, target: Any, kwargs: dict[str, Any], expected: float) -> None:
    assert get_metric("choice_accuracy")(prediction, target, **kwargs) == expected


@pytest.mark.parametrize("target", ["AB", "", "Paris", 26, -1, True, None, 1.5])
def test_choice_accuracy_bad_target(target: Any) -> None:
    with pytest.raises(ValueError):
        get_metric("choice_accuracy")("A", target)


@pytest.mark.parametrize(
    ("prediction", "target", "kwargs", "expected"),
    [
        ("1,000", 1000, {}, 1.0),
        ("3.50 m", 3.5, {}, 1.0),
        ("-2", -2, {}, 1.0),
        ("1/2", 0.5, {}, 1.0),
        ("12%", 12, {}, 1.0),
        ("The total is 42 apples", "42", {}, 1.0),
        ("1000", "1,000", {}, 1.0),
        ("0.1", 0.1000000001, {}, 1.0),
        ("0.1", 0.1001, {}, 0.0),
        ("0.1", 0.1001, {"tolerance": 1e-2}, 1.0),
        ("7", 8, {}, 0.0),
        ("2", -2, {}, 0.0),
        ("3 then 7", 7, {}, 0.0),
        ("7", [6, 7], {}, 1.0),
        ("no number", 5, {}, 0.0),
        ("0", 0, {}, 1.0),
        ("1/0", 0, {}, 0.0),
    ],
)
def test_number_match(prediction: str, target: Any, kwargs: dict[str, Any], expected: float) -> None:
    assert get_metric("number_match")(prediction, target, **kwargs) == expected


@pytest.mark.parametrize("target", ["not a number", None])
def test_number_match_bad_target(target: Any) -> None:
    with pytest.raises(ValueError, match="not a number"):
        get_metric("number_match")("5", target)


@pytest.mark.parametrize("name", ["exact_match", "contains", "choice_accuracy", "number_match"])
def test_builtin_metrics_ignore_unknown_kwargs(name: str) -> None:
    score = get_metric(name)("B", "B", unrelated=True, choices=None)
    assert score in (0.0, 1.0)
    assert isinstance(score, float)


def test_the_answer_a_metric_reads_is_recorded_while_scoring_only() -> None:
    with scoring.recording_extracted() as record:
        assert scoring.get_metric("choice_accuracy")("I think (B).", "C", choices=["x", "y", "z"]) == 0.0
    assert record.noted and record.value == "B"
    with scoring.recording_extracted() as record:
        scoring.get_metric("number_match")("about 1,000 apples", 1000)
    assert record.value == 1000.0
    with scoring.recording_extracted() as record:
        scoring.get_metric("choice_accuracy")("no idea", "A", choices=["x", "y"])
    assert record.noted and record.value is None  # read, and nothing found: not "not recorded"
    with scoring.recording_extracted() as record:
        pass
    assert not record.noted
    assert scoring.extracted("free") == "free"  # outside scoring: a no-op that passes the value on
