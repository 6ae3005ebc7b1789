"""Scoring: metrics (registered by name), answer parsing and reasoning-tag stripping."""

from pytest_lmms.scoring._english import (
    normalize_basic,
    normalize_english,
    standardize_numbers,
    standardize_spellings,
)
from pytest_lmms.scoring._extracted import Recording, extracted, recording_extracted
from pytest_lmms.scoring._metrics import (
    Metric,
    available_metrics,
    extract_choice,
    extract_number,
    get_metric,
    metric,
    normalize_answer,
    seeded_choice,
)
from pytest_lmms.scoring._reasoning import (
    DEFAULT_REASONING_TAGS,
    parse_reasoning_tags,
    strip_reasoning,
)
from pytest_lmms.scoring._wer import WordAlignment, align_words, corpus_wer, word_error_rate, word_errors
from pytest_lmms.scoring.judge import Judge, JudgeError, JudgePrompt

__all__ = [
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
