"""The seeded chance-level baseline."""

from __future__ import annotations

from collections import Counter

import pytest
from scipy.stats import chisquare

from pytest_lmms.models import create_backend
from pytest_lmms.types import Message, Request, TextPart


def mc_request(doc_id: str, choices: tuple[str, ...] = ("red", "green", "blue", "yellow")) -> Request:
    return Request(task="t", doc_id=doc_id, messages=(Message("user", (TextPart("q"),)),), choices=choices)


def test_answers_are_reproducible_and_order_independent() -> None:
    requests = [mc_request(str(i)) for i in range(50)]
    first = [r.text for r in create_backend("random:7").generate(requests)]
    backwards = [r.text for r in create_backend("random:7").generate(requests[::-1])][::-1]
    assert first == backwards
    assert first != [r.text for r in create_backend("random:8").generate(requests)]


def test_letters_are_uniform_over_the_options() -> None:
    answers = [r.text for r in create_backend("random:0").generate([mc_request(str(i)) for i in range(4000)])]
    counts = Counter(answers)
    assert set(counts) == {"A", "B", "C", "D"}
    assert chisquare([counts[c] for c in "ABCD"]).pvalue > 0.001


def test_text_answers_and_fallback_without_options() -> None:
    backend = create_backend("random:1", {"answer": "text", "fallback": "none"})
    assert backend.generate([mc_request("x")])[0].text in {"red", "green", "blue", "yellow"}
    assert backend.generate([mc_request("y", choices=())])[0].text == "none"


def test_bad_arguments_are_clear() -> None:
    with pytest.raises(ValueError, match="the model id is the seed"):
        create_backend("random:abc")
    with pytest.raises(ValueError, match="answer must be"):
        create_backend("random:0", {"answer": "maybe"})
    with pytest.raises(
        ValueError, match="unknown argument 'nonsense' for backend 'random'.*answer, fallback"
    ):
        create_backend("random:0", {"nonsense": "1"})
