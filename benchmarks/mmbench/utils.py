"""MMBench (dev, English): hint + question + lettered options; circular evaluation.

Each question appears once per rotation of its options; rotations share ``index`` modulo
1,000,000, which is the question's group (the cluster). A group counts as right only when
every rotation is answered right (circular accuracy); ``accuracy`` is the plain per-row mean.
Answers are matched by rules (``pytest_lmms.scoring.extract_choice``: an explicit "answer
is X", a standalone letter, or the exact text of one option); no judge fallback yet.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from pytest_lmms.scoring import extract_choice
from pytest_lmms.stats import cluster_copies

LETTERS = "ABCD"
POST_PROMPT = "Answer with the option's letter from the given choices directly."
GROUP = 1_000_000


def _present(value: Any) -> bool:
    return (
        value is not None
        and not (isinstance(value, float) and math.isnan(value))
        and str(value).strip() != ""
    )


def options(doc: dict[str, Any]) -> list[str]:
    return [str(doc[letter]) for letter in LETTERS if _present(doc.get(letter))]


def doc_to_messages(doc: dict[str, Any]) -> list[dict[str, Any]]:
    lines = []
    if _present(doc.get("hint")):
        lines.append(str(doc["hint"]))
    lines.append(str(doc["question"]))
    lines += [f"{letter}. {text}" for letter, text in zip(LETTERS, options(doc), strict=False)]
    lines.append(POST_PROMPT)
    return [
        {
            "role": "user",
            "content": [{"type": "image", "image": doc["image"]}, {"type": "text", "text": "\n".join(lines)}],
        }
    ]


def group_of(doc: dict[str, Any]) -> str:
    return str(int(doc["index"]) % GROUP)


def process_results(doc: dict[str, Any], response: str) -> dict[str, float]:
    picked = extract_choice(response, choices=options(doc))
    right = float(picked == str(doc["answer"]).strip().upper())
    return {"accuracy": right, "circular_accuracy": right}


def circular_accuracy(results: Sequence[Any]) -> float:
    """Share of question groups whose every rotation is right.

    Groups are the cluster ids; a group drawn k times by the bootstrap counts as k groups.
    """
    groups = cluster_copies(results, lambda r: r.cluster_id, lambda r: (r.doc_id, r.repeat))
    return sum(all(r.scores["circular_accuracy"] == 1.0 for r in group) for group in groups) / len(groups)
