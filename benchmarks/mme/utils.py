"""MME: yes/no questions, two per image; scored as the official MME eval_tool scores them.

Per category: accuracy (share of questions right) and accuracy+ (share of images with both
questions right), each in percent; the category score is their sum (max 200). Perception
sums its 10 categories (max 2000), cognition its 4 (max 800).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

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
POST_PROMPT = "\nAnswer the question using a single word or phrase."


def doc_to_messages(doc: dict[str, Any]) -> list[dict[str, Any]]:
    content = [
        {"type": "image", "image": doc["image"]},
        {"type": "text", "text": doc["question"].strip() + POST_PROMPT},
    ]
    return [{"role": "user", "content": content}]


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
    correct = float(parse_yes_no(response) == str(doc["answer"]).lower().strip())
    group = "mme_perception" if doc["category"] in PERCEPTION else "mme_cognition"
    return {"accuracy": correct, group: correct, f"cat_{doc['category']}": correct}


def _category(result: Any) -> str:
    # cluster ids are the question_id, "<category>/<image file>" in lmms-lab/MME
    return str(result.cluster_id).split("/", 1)[0]


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
