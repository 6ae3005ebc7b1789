"""AIR-Bench chat: open-ended questions about speech, sounds, music and mixed audio, scored
by an LLM judge against a reference answer.

The judge sees the audio's text description (``meta_info``), the question, the reference
answer and the model's answer, and rates both from 1 to 10 with the official prompt
(OFA-Sys/AIR-Bench ``score_chat.py``). Each sample is judged twice with the two answers'
positions swapped, against the judge's position bias (the AIR-Bench paper; lmms-eval does the
same); a sample's score is the mean of the model's two ratings.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from pytest_lmms.scoring import JudgeError, JudgePrompt, strip_reasoning

# The official judge prompt (score_chat.py), word for word: scores depend on it.
JUDGE_PROMPT = JudgePrompt(
    name="air_bench_chat",
    template=(
        "You are a helpful and precise assistant for checking the quality of the answer.\n"
        "[Detailed Audio Description]\n{audio_description}\n[Question]\n{question}\n"
        "[The Start of Assistant 1s Answer]\n{answer_1}\n[The End of Assistant 1s Answer]\n"
        "[The Start of Assistant 2s Answer]\n{answer_2}\n[The End of Assistant 2s Answer]\n[System]\n"
        "We would like to request your feedback on the performance of two AI assistants in response to "
        "the user question and audio description displayed above. AI assistants are provided with "
        "detailed audio descriptions and questions.\n"
        "Please rate the helpfulness, relevance, accuracy, and comprehensiveness of their responses. "
        "Each assistant receives an overall score on a scale of 1 to 10, where a higher score indicates "
        "better overall performance. Please output a single line containing only two values indicating "
        "the scores for Assistant 1 and 2, respectively. The two scores are separated by a space."
    ),
    max_new_tokens=1024,  # the official max_tokens
)

# task_name -> the category the leaderboard reports (official cal_score.py; its
# speech_and_sound and speech_and_music are the leaderboard's "Mixed Audio")
CATEGORIES = {
    "speech_QA": "speech",
    "speech_dialogue_QA": "speech",
    "sound_QA": "sound",
    "sound_generation_QA": "sound",
    "music_QA": "music",
    "music_generation_analysis_QA": "music",
    "speech_and_sound_QA": "mixed",
    "speech_and_music_QA": "mixed",
}


def doc_to_messages(doc: dict[str, Any]) -> list[dict[str, Any]]:
    # the official Inference_Chat.py prompts with the question alone
    content = [
        {"type": "audio", "audio": doc["audio"]},
        {"type": "text", "text": str(doc["question"])},
    ]
    return [{"role": "user", "content": content}]


def category_of(doc: Mapping[str, Any]) -> str:
    task_name = doc["task_name"]
    if task_name not in CATEGORIES:
        raise ValueError(f"unknown AIR-Bench chat task_name {task_name!r}; known: {', '.join(CATEGORIES)}")
    return CATEGORIES[task_name]


def audio_clip(doc: dict[str, Any]) -> str:
    """The cluster: questions about one audio clip are scored together."""
    return f"{doc['task_name']}/{doc['dataset_name']}/{doc['path']}"


_SCORE = r"(\d+(?:\.\d+)?)"
# a line holding only the two scores: "8 7", "8, 7", "8/7", "8 7."
_SCORE_LINE = re.compile(rf"^\s*{_SCORE}\s*(?:[\s,/])\s*{_SCORE}\s*\.?\s*$")
# "Assistant 1: 8", "Assistant 2's score = 7"
_LABELLED = [
    re.compile(rf"\bassistant\s*{n}(?:'s)?(?:\s+score)?\s*[:=]\s*{_SCORE}", re.IGNORECASE) for n in (1, 2)
]
_LABEL = re.compile(r"\bassistant\s*[12]\b", re.IGNORECASE)
_NUMBER = re.compile(rf"(?<![\w.+-]){_SCORE}(?!\w|\.\d)")  # no sign, not inside a word


def parse_scores(reply: str) -> tuple[float, float]:
    """The two scores in a judge's reply: (Assistant 1's, Assistant 2's).

    The official format is one line of two numbers separated by a space ("8 7"). Read, in
    order: the first line holding only two numbers (space, comma or slash between them), so
    lines of explanation around it do not matter; else labelled scores ("Assistant 1: 8 ...
    Assistant 2: 7"); else the reply's numbers if, with the "Assistant 1/2" labels left out,
    there are exactly two ("Scores: 8 7"). Anything else, or a score outside 0 to 10, raises
    JudgeError quoting the reply (the official script counts such replies as failures and
    leaves them out of its averages).
    """
    answer = strip_reasoning(reply)
    scores: tuple[float, float] | None = None
    for line in answer.splitlines():
        match = _SCORE_LINE.match(line)
        if match:
            scores = (float(match.group(1)), float(match.group(2)))
            break
    if scores is None:
        first, second = (pattern.search(answer) for pattern in _LABELLED)
        if first and second:
            scores = (float(first.group(1)), float(second.group(1)))
    if scores is None:
        numbers = _NUMBER.findall(_LABEL.sub(" ", answer))
        if len(numbers) == 2:
            scores = (float(numbers[0]), float(numbers[1]))
    if scores is None:
        raise JudgeError(f"AIR-Bench chat: cannot read two scores in the judge's reply {reply!r}")
    if not all(0 <= score <= 10 for score in scores):
        raise JudgeError(f"AIR-Bench chat: a score is outside 0-10 in the judge's reply {reply!r}")
    return scores


def process_results(doc: dict[str, Any], response: str, judge: Any = None) -> dict[str, float]:
    """The model's score (mean of its two ratings), per category too, and the reference's."""
    if judge is None:
        raise JudgeError("AIR-Bench chat is scored by an LLM judge: pass --judge-model=...")
    category = category_of(doc)
    if doc.get("meta_info") is None:
        raise ValueError(f"AIR-Bench chat question {doc.get('uniq_id')!r} has no meta_info to judge with")
    context = {"audio_description": str(doc["meta_info"]), "question": str(doc["question"])}
    reference = str(doc["answer_gt"])
    # reference first, then the model first (Assistant 1 is the first score of each reply)
    reference_then_model = parse_scores(
        judge.ask(JUDGE_PROMPT, **context, answer_1=reference, answer_2=response)
    )
    model_then_reference = parse_scores(
        judge.ask(JUDGE_PROMPT, **context, answer_1=response, answer_2=reference)
    )
    model_score = (reference_then_model[1] + model_then_reference[0]) / 2
    reference_score = (reference_then_model[0] + model_then_reference[1]) / 2
    return {"score": model_score, f"cat_{category}": model_score, "reference_score": reference_score}


def _category_means(results: Sequence[Any]) -> dict[str, float]:
    by_category: dict[str, list[float]] = defaultdict(list)
    for result in results:
        category = next(key for key in result.scores if key.startswith("cat_"))
        by_category[category].append(result.scores["score"])
    return {category: sum(scores) / len(scores) for category, scores in by_category.items()}


def category_average(results: Sequence[Any]) -> float:
    """The leaderboard's "Average": the mean of the category means (speech, sound, music,
    mixed; over the categories present), not the mean over questions."""
    means = _category_means(results)
    return sum(means.values()) / len(means)
