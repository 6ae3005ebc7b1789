"""Word error rate: a word-level Levenshtein alignment, per utterance and over a corpus.

WER = (substitutions + deletions + insertions) / reference words. A corpus WER divides the
summed errors by the summed reference words (each word weighs the same), which is not the
mean of the per-utterance rates (each utterance weighing the same): ASR papers and jiwer
report the former.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["WordAlignment", "align_words", "corpus_wer", "word_error_rate", "word_errors"]

Words = str | Sequence[str]
"""A transcript: a string (split on whitespace) or its words."""


@dataclass(frozen=True, slots=True)
class WordAlignment:
    """The edit counts of one minimum-cost alignment of a hypothesis to a reference."""

    hits: int
    substitutions: int
    deletions: int
    insertions: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def reference_words(self) -> int:
        return self.hits + self.substitutions + self.deletions


def _words(text: Words) -> list[str]:
    return text.split() if isinstance(text, str) else list(text)


def align_words(reference: Words, hypothesis: Words) -> WordAlignment:
    """Align two transcripts word by word with unit costs (Levenshtein, 1966).

    Every minimum-cost alignment has the same number of errors, but not the same split into
    S, D and I ("c a" -> "b c" is two substitutions, or a deletion, a hit and an insertion).
    This one has the most hits among them, which fixes the split: with E errors and H hits
    over R reference and N hypothesis words, S = R + N - 2H - E, D = R - H - S and
    I = N - H - S. (jiwer breaks such ties its own way; its error total is the same.)
    """
    ref, hyp = _words(reference), _words(hypothesis)
    # cell = (cost, hits, substitutions, deletions, insertions) of the best path to it: the
    # lowest cost, then the most hits (lexicographic order is kept under addition, so the
    # dynamic programme finds the best path for the pair, not only the cheapest)
    previous = [(j, 0, 0, 0, j) for j in range(len(hyp) + 1)]
    for i, ref_word in enumerate(ref, 1):
        current = [(i, 0, 0, i, 0)]
        for j, hyp_word in enumerate(hyp, 1):
            cost, h, s, d, n = previous[j - 1]
            cell = (cost, h + 1, s, d, n) if ref_word == hyp_word else (cost + 1, h, s + 1, d, n)
            cost, h, s, d, n = previous[j]
            if (cost + 1, -h) < (cell[0], -cell[1]):
                cell = (cost + 1, h, s, d + 1, n)
            cost, h, s, d, n = current[j - 1]
            if (cost + 1, -h) < (cell[0], -cell[1]):
                cell = (cost + 1, h, s, d, n + 1)
            current.append(cell)
        previous = current
    _, hits, substitutions, deletions, insertions = previous[-1]
    return WordAlignment(hits, substitutions, deletions, insertions)


def word_errors(reference: Words, hypothesis: Words) -> tuple[int, int]:
    """``(errors, reference_words)`` of one utterance: the two numbers a corpus WER sums.

    An empty reference gives ``(len(hypothesis words), 0)``: every word is an insertion.
    """
    alignment = align_words(reference, hypothesis)
    return alignment.errors, alignment.reference_words


def word_error_rate(reference: Words, hypothesis: Words) -> float:
    """The WER of one utterance, as a fraction (0.25, not 25).

    Raises:
        ValueError: the reference has no words (the rate is undefined).
    """
    errors, words = word_errors(reference, hypothesis)
    if words == 0:
        raise ValueError("the WER of an empty reference is undefined")
    return errors / words


def corpus_wer(references: Iterable[Words], hypotheses: Iterable[Words]) -> float:
    """Summed errors over summed reference words, as a fraction.

    Raises:
        ValueError: the two lists differ in length, or the references hold no word at all.
    """
    refs, hyps = list(references), list(hypotheses)
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    total_errors = total_words = 0
    for reference, hypothesis in zip(refs, hyps, strict=True):
        errors, words = word_errors(reference, hypothesis)
        total_errors += errors
        total_words += words
    if total_words == 0:
        raise ValueError("the references hold no word: the corpus WER is undefined")
    return total_errors / total_words
