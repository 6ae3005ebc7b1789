"""MMBench (English): hint + question + lettered options; circular evaluation.

Each question appears once per rotation of its options; rotations share ``index`` modulo
1,000,000, which is the question's group (the cluster). A group counts as right only when
every rotation is answered right (circular accuracy); ``accuracy`` is the plain per-row mean.
Answers are matched by rules first (``pytest_lmms.scoring.extract_choice``: an explicit
"answer is X", a standalone letter, or the exact text of one option); when the rules find
nothing and a judge is given (``--judge-model``), the judge matches the answer to an option
with the official matching prompt (VLMEvalKit ``build_prompt``), and its reply is read with
the same rules ("Z" or nothing readable: no option, wrong).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

from pytest_lmms.scoring import extract_choice, extracted
from pytest_lmms.scoring.judge import JudgePrompt
from pytest_lmms.stats import cluster_copies

LETTERS = "ABCD"
POST_PROMPT = "Answer with the option's letter from the given choices directly."
GROUP = 1_000_000

# The official option matcher (VLMEvalKit vlmeval/dataset/utils/multiple_choice.py,
# build_prompt + build_option_str), word for word: its typos are part of what the judge sees.
MATCH_PROMPT = JudgePrompt(
    "mmbench_match",
    "You are an AI assistant who will help me to match "
    "an answer with several options of a single-choice question. "
    "You are provided with a question, several options, and an answer, "
    "and you need to find which option is most similar to the answer. "
    "If the meaning of all options are significantly different from the answer, output Z. "
    "Your should output a single uppercase character in A, B, C, D (if they are valid options), and Z. \n"
    "Example 1: \n"
    "Question: What is the main object in image?\nOptions: A. teddy bear B. rabbit C. cat D. dog\n"
    "Answer: a cute teddy bear\nYour output: A\n"
    "Example 2: \n"
    "Question: What is the main object in image?\nOptions: A. teddy bear B. rabbit C. cat D. dog\n"
    "Answer: Spider\nYour output: Z\n"
    "Example 3: \n"
    "Question: {question}?\nOptions: {options}\nAnswer: {prediction}\nYour output: ",
    max_new_tokens=16,
)

# The six level-2 abilities, with the abbreviations of the official reports.
L2_ABBREVIATIONS = {
    "coarse_perception": "CP",
    "finegrained_perception (instance-level)": "FP-S",
    "finegrained_perception (cross-instance)": "FP-C",
    "logic_reasoning": "LR",
    "relation_reasoning": "RR",
    "attribute_reasoning": "AR",
}


# lmms-lab/MMBench stores an absent option or hint as the string "nan" (what pandas wrote
# for an empty TSV cell); other copies have None or a float NaN. All three mean "absent".
ABSENT_STRINGS = ("", "nan")


def _present(value: Any) -> bool:
    return (
        value is not None
        and not (isinstance(value, float) and math.isnan(value))
        and str(value).strip().lower() not in ABSENT_STRINGS
    )


# lmms-lab/MMBench spells the level-2 column "L2-category"; the official TSVs and other hub
# copies (HuggingFaceM4/MMBench, lmms-lab/MMBench_EN) spell it "l2-category".
L2_COLUMNS = ("L2-category", "l2-category")


def l2_category(doc: dict[str, Any]) -> str:
    """The level-2 ability, under either spelling of its column ("" when neither is there)."""
    for column in L2_COLUMNS:
        if _present(doc.get(column)):
            return str(doc[column])
    return ""


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


PPL_POST_PROMPT = "Answer with the correct option."


def ppl_messages(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """mmbench_en_dev_ppl's prompt: the image, the hint, the question; no lettered options,
    since the options' own texts are the continuations scored (so every rotation of a
    question is asked the same thing, and its circular accuracy equals its accuracy)."""
    lines = [str(doc["hint"])] if _present(doc.get("hint")) else []
    lines += [str(doc["question"]), PPL_POST_PROMPT]
    return [
        {
            "role": "user",
            "content": [{"type": "image", "image": doc["image"]}, {"type": "text", "text": "\n".join(lines)}],
        }
    ]


def group_of(doc: dict[str, Any]) -> str:
    return str(int(doc["index"]) % GROUP)


def option_block(doc: dict[str, Any]) -> str:
    """The options as the official matcher lists them."""
    text = "There are several options: \n"
    for letter, option in zip(LETTERS, options(doc), strict=False):
        text += f"{letter}. {option}\n"
    return text


def match_option(doc: dict[str, Any], response: str, judge: Any = None) -> str | None:
    """The option letter the response picks: rules, then the judge (if any) when they fail."""
    choices = options(doc)
    picked = extract_choice(response, choices=choices)
    if picked is not None or judge is None or not response.strip():
        return picked
    reply = judge.ask(
        MATCH_PROMPT, question=str(doc["question"]), options=option_block(doc), prediction=response.strip()
    )
    return extract_choice(reply, choices=choices)


def _slug(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z]+", "_", name).strip("_")


def process_results(doc: dict[str, Any], response: str, judge: Any = None) -> dict[str, float]:
    picked = extracted(match_option(doc, response, judge))
    right = float(picked is not None and picked == str(doc["answer"]).strip().upper())
    scores = {"accuracy": right, "circular_accuracy": right}
    l2 = l2_category(doc)
    if l2:
        scores[f"l2_{L2_ABBREVIATIONS.get(l2, _slug(l2))}"] = right
    if doc.get("category"):
        scores[f"cat_{_slug(str(doc['category']))}"] = right
    return scores


def circular_accuracy(results: Sequence[Any], metric: str = "circular_accuracy") -> float:
    """Share of question groups whose every rotation is right (on ``metric``'s 0/1 scores).

    Groups are the cluster ids; a group drawn k times by the bootstrap counts as k groups.
    Per-ability rows (``l2_*``, ``cat_*``) are the circular accuracy of that ability's groups.
    """
    groups = cluster_copies(results, lambda r: r.cluster_id, lambda r: (r.doc_id, r.repeat))
    return sum(all(r.scores[metric] == 1.0 for r in group) for group in groups) / len(groups)


# the evaluation server's columns (the official TSV's, lower-case "l2-category")
SUBMISSION_COLUMNS = ("index", "question", "hint", "A", "B", "C", "D", "category", "l2-category")


def submission(results: Sequence[Any], doc: Callable[[str], dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows for the MMBench evaluation server (one per rotation, as in the dataset): the
    question's columns and the model's answer as ``prediction``. The server expects an
    Excel file; save these rows with ``pytest-lmms submission ... --out FILE.xlsx`` (needs
    openpyxl) or as CSV / JSON."""
    rows = []
    for result in sorted(results, key=lambda r: (int(r.doc_id), r.repeat)):
        if result.repeat:
            continue
        source = doc(result.doc_id)
        row = {column: _cell(source.get(column)) for column in SUBMISSION_COLUMNS}
        row["index"] = int(source["index"])  # a string in lmms-lab/MMBench's en config
        row["l2-category"] = l2_category(source) or None
        row["prediction"] = result.response
        rows.append(row)
    return rows


def _cell(value: Any) -> Any:
    return value if _present(value) else None


def answered(doc: dict[str, Any], response: str) -> dict[str, float]:
    """Test split (no answers): whether the rules could read an option from the response."""
    return {"answered": float(extract_choice(response, choices=options(doc)) is not None)}
