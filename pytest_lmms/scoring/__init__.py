"""Scoring: metrics (registered by name), answer parsing and reasoning-tag stripping."""

from pytest_lmms.scoring._metrics import (
    Metric,
    available_metrics,
    extract_choice,
    extract_number,
    get_metric,
    metric,
    normalize_answer,
)
from pytest_lmms.scoring._reasoning import (
    DEFAULT_REASONING_TAGS,
    parse_reasoning_tags,
    strip_reasoning,
)
from pytest_lmms.scoring.judge import Judge, JudgeError, JudgePrompt

__all__ = [
    "DEFAULT_REASONING_TAGS",
    "Judge",
    "JudgeError",
    "JudgePrompt",
    "Metric",
    "available_metrics",
    "extract_choice",
    "extract_number",
    "get_metric",
    "metric",
    "normalize_answer",
    "parse_reasoning_tags",
    "strip_reasoning",
]
