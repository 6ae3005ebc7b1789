"""MME: yes/no questions, two per image; scored as the official MME eval_tool scores them.

Per category: accuracy (share of questions right) and accuracy+ (share of images with both
questions right), each in percent; the category score is their sum (max 200). Perception
sums its 10 categories (max 2000), cognition its 4 (max 800).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from pytest_lmms.scoring import extracted
from pytest_lmms.stats import cluster_copies

PERCEPTION = (
    "existence",
    "count",
    "position",
    "color",
    "posters",
    "celebrity",
    "scene",
    "landmark",
    "artwork",
    "OCR",
)
COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")
# lmms-eval (tasks/mme/utils.py, mme_doc_to_text with its default post_prompt) removes the
# dataset's own instruction from the question and appends its short-answer instruction
REPLACED_INSTRUCTION = " Please answer yes or no."
POST_PROMPT = "\nAnswer the question using a single word or phrase."


def prompt_text(doc: dict[str, Any]) -> str:
    """lmms-eval's prompt: the question without " Please answer yes or no.", then POST_PROMPT."""
    return str(doc["question"]).strip().replace(REPLACED_INSTRUCTION, "") + POST_PROMPT


def doc_to_messages(doc: dict[str, Any]) -> list[dict[str, Any]]:
    content = [
        {"type": "image", "image": doc["image"]},
        {"type": "text", "text": prompt_text(doc)},
    ]
    return [{"role": "user", "content": content}]


def category_of(doc: dict[str, Any]) -> str:
    """The document's own category; one outside MME's 14 is bad data, not a new row."""
    category = str(doc.get("category") or "")
    if category not in PERCEPTION + COGNITION:
        raise ValueError(
            f"MME question {doc.get('question_id')!r}: category {category!r} is not one of the 14 "
            f"MME categories ({', '.join(PERCEPTION + COGNITION)})"
        )
    return category


def image_of(doc: dict[str, Any]) -> str:
    """The cluster: the image both questions are about, named within its category.

    lmms-lab/MME's question_id already reads "<category>/<image file>"; an id without the
    prefix gets it, so images of two categories with the same file name stay apart.
    """
    category, question_id = category_of(doc), str(doc["question_id"])
    return question_id if question_id.startswith(category + "/") else f"{category}/{question_id}"


def parse_yes_no(response: str) -> str:
    """The official rule: the whole answer is yes or no, else look for yes, then no, in its
    first four characters; anything else is "other" (always wrong)."""
    answer = response.lower().strip()
    if answer in ("yes", "no"):
        return answer
    head = answer[:4]
    if "yes" in head:
        return "yes"
    if "no" in head:
        return "no"
    return "other"


def process_results(doc: dict[str, Any], response: str) -> dict[str, float]:
    category = category_of(doc)
    correct = float(extracted(parse_yes_no(response)) == str(doc["answer"]).lower().strip())
    group = "mme_perception" if category in PERCEPTION else "mme_cognition"
    return {"accuracy": correct, group: correct, f"cat_{category}": correct}


def _category(result: Any) -> str:
    """The category process_results recorded (its ``cat_<category>`` score), never a guess
    from the cluster id."""
    names = [key.removeprefix("cat_") for key in result.scores if key.startswith("cat_")]
    if len(names) != 1:
        raise ValueError(f"MME sample {result.doc_id!r} carries no single cat_<category> score: {names}")
    return names[0]


def category_scores(results: Sequence[Any], metric: str) -> dict[str, float]:
    """acc + acc+ (percent) per category, from one metric's 0/1 scores."""
    by_category: dict[str, list[Any]] = defaultdict(list)
    for result in results:
        by_category[_category(result)].append(result)
    scores = {}
    for category, rows in by_category.items():
        accuracy = sum(r.scores[metric] for r in rows) / len(rows)
        # one entry per image, an image drawn k times by the bootstrap counting k times
        images = cluster_copies(rows, lambda r: r.cluster_id, lambda r: (r.doc_id, r.repeat))
        plus = sum(all(r.scores[metric] == 1.0 for r in image) for image in images) / len(images)
        scores[category] = 100 * accuracy + 100 * plus
    return scores


def category_score(results: Sequence[Any]) -> float:
    """acc + acc+ of one category: the results carrying its ``cat_<category>`` score."""
    metric = next(key for key in results[0].scores if key.startswith("cat_"))
    return next(iter(category_scores(results, metric).values()))


def perception_total(results: Sequence[Any]) -> float:
    return sum(category_scores(results, "mme_perception").values())


def cognition_total(results: Sequence[Any]) -> float:
    return sum(category_scores(results, "mme_cognition").values())
