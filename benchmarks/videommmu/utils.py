"""Video-MMMU: three tracks of questions on 300 lecture videos (Perception, Comprehension,
Adaptation), prompted and scored as lmms-eval's videommmu task, with the prompt texts of the
benchmark authors' task configuration.

Each question sees its video; in Adaptation the question's image is the video's last frame
(the dataset authors appended it), so every track samples frames with the last one forced.
Multiple-choice answers are read with lmms-eval's Video-MMMU letter parser; open answers with
MMMU's rules (key sub-responses after phrases like "is" / "therefore", numbers normalized to
two decimals, a gold string counting when it occurs in one of them).

Videos are ``<root>/<discipline>/<id>.mp4`` with the discipline (Art, Business, Science,
Medicine, Humanities, Engineering) given by the subject inside the id; the root is
``metadata.video_dir`` (the YAML metadata, handed to doc_to_messages), else the
``VIDEOMMMU_DIR`` environment variable, else ``$HF_HOME/video_mmmu``.
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

NUM_FRAMES = 32  # the max_frames_num of the authors' evaluation commands
ENV_DIR = "VIDEOMMMU_DIR"
CACHE_NAME = "video_mmmu"
MULTIPLE_CHOICE = "multiple-choice"

PERCEPTION_COMPREHENSION_POST_PROMPT = "\nPlease ignore the Quiz question in last frame of the video."
ADAPTATION_PRE_PROMPT = "You should watch and learn the video content. Then apply what you learned to "
ADAPTATION_MCQ_PROMPT = (
    "answer the following multi-choice question. The image for this question is at the end of the video.\n"
)
ADAPTATION_OPEN_PROMPT = (
    "answer the following open-ended question. The image for this question is at the end of the video.\n"
)

DISCIPLINES = {
    "Art": ("Art", "Art_Theory", "Design", "Music"),
    "Science": ("Biology", "Chemistry", "Geography", "Math", "Physics"),
    "Humanities": ("History", "Literature", "Sociology", "Psychology"),
    "Engineering": (
        "Agriculture",
        "Architecture_and_Engineering",
        "Computer_Science",
        "Electronics",
        "Energy_and_Power",
        "Materials",
        "Mechanical_Engineering",
    ),
    "Medicine": (
        "Basic_Medical_Science",
        "Clinical_Medicine",
        "Diagnostics_and_Laboratory_Medicine",
        "Pharmacy",
        "Public_Health",
    ),
    "Business": ("Accounting", "Economics", "Finance", "Manage", "Marketing"),
}
PUNCTUATION = (",", ".", "!", "?", ";", ":", "'")
KEY_INDICATORS = (
    "could be ",
    "so ",
    "is ",
    "thus ",
    "therefore ",
    "final ",
    "answer ",
    "result ",
    "are ",
    "in total ",
    "total ",
    "identify ",
    "recognize ",
    "calculated as ",
    "counted as ",
    "measured as ",
    "observed as ",
    "concluded as ",
    "found to be ",
    "equals ",
    "determined to be ",
    "number of ",
    "value is ",
    "adds up to ",
    "have ",
    "has ",
)
TRIVIAL_TAILS = (":", ",", ".", "!", "?", ";", "'")


# ---- files and prompts --------------------------------------------------------------------


def media_root(metadata: Mapping[str, Any] | None = None) -> Path:
    configured = (metadata or {}).get("video_dir") or os.environ.get(ENV_DIR)
    if configured:
        return Path(str(configured)).expanduser()
    return Path(os.environ.get("HF_HOME", "~/.cache/huggingface")).expanduser() / CACHE_NAME


def discipline_of(question_id: str) -> str:
    """The video folder of an id ``<split>_<Subject>_<n>``, e.g. test_Art_Theory_12 -> Art."""
    subject = "_".join(question_id.split("_")[1:-1])
    for discipline, subjects in DISCIPLINES.items():
        if subject in subjects:
            return discipline
    raise ValueError(f"Video-MMMU id {question_id!r}: subject {subject!r} is in no discipline")


def video_path(doc: Mapping[str, Any], metadata: Mapping[str, Any] | None = None) -> Path:
    question_id = str(doc["id"])
    return media_root(metadata) / discipline_of(question_id) / f"{question_id}.mp4"


def format_options(options: Sequence[str]) -> str:
    """Options one per line as "A. ...", unless every one already starts with its "X."."""
    letters = string.ascii_uppercase[: len(options)]
    if all(str(option).startswith(f"{letter}.") for option, letter in zip(options, letters, strict=False)):
        return "\n".join(str(option) for option in options)
    return "\n".join(f"{letter}. {option}" for letter, option in zip(letters, options, strict=False))


def _messages(doc: Mapping[str, Any], text: str, metadata: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    sampling = {"num_frames": int((metadata or {}).get("num_frames", NUM_FRAMES)), "force_last": True}
    video = {"type": "video", "video": str(video_path(doc, metadata)), "sampling": sampling}
    return [{"role": "user", "content": [video, {"type": "text", "text": text}]}]


def doc_to_messages(doc: dict[str, Any], metadata: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Perception and Comprehension: question, options, and the note on the last frame."""
    text = f"{doc['question']}\n{format_options(doc['options'])}{PERCEPTION_COMPREHENSION_POST_PROMPT}"
    return _messages(doc, text, metadata)


def doc_to_messages_adaptation(
    doc: dict[str, Any], metadata: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    if doc["question_type"] == MULTIPLE_CHOICE:
        text = f"{ADAPTATION_PRE_PROMPT}{ADAPTATION_MCQ_PROMPT}{doc['question']}\n{format_options(doc['options'])}"
    else:
        text = f"{ADAPTATION_PRE_PROMPT}{ADAPTATION_OPEN_PROMPT}{doc['question']}"
    return _messages(doc, text, metadata)


# ---- multiple choice ------------------------------------------------------------------------


def parse_multi_choice_response(response: str, index2ans: Mapping[str, str]) -> str | None:
    """lmms-eval's Video-MMMU letter parser: the letter, or None (no answer found).

    After stripping surrounding punctuation and padding with spaces: candidates are the
    letters written "X." and those written "X:" (both passes run); if none, "(X)"; if none,
    "X "; if none and more than five words, the options whose text occurs in the response.
    Of several, the one occurring last, located by the first form that found any.
    """
    for char in PUNCTUATION:
        response = response.strip(char)
    response = f" {response} "
    with_period = [choice for choice in index2ans if f"{choice}." in response]
    with_colon = [choice for choice in index2ans if f"{choice}:" in response]
    candidates = with_period + with_colon
    bracketed: list[str] = []
    if not candidates:
        bracketed = candidates = [choice for choice in index2ans if f"({choice})" in response]
    if not candidates:
        candidates = [choice for choice in index2ans if f"{choice} " in response]
    by_letter = True
    if not candidates and len(response.split()) > 5:
        candidates = [choice for choice, text in index2ans.items() if str(text).lower() in response.lower()]
        by_letter = False
    if not candidates:
        return None
    if len(candidates) == 1:
        return candidates[0]
    if not by_letter:
        form = "{text}"
    elif with_period:
        form = "{choice}."
    elif with_colon:
        form = "{choice}:"
    elif bracketed:
        form = "({choice})"
    else:
        form = " {choice} "
    haystack = response.lower() if not by_letter else response
    positions = [
        haystack.rfind(form.format(choice=choice, text=str(index2ans[choice]).lower()))
        for choice in candidates
    ]
    return candidates[positions.index(max(positions))]  # the first of equal maxima, as np.argmax


# ---- open answers (MMMU's rules) ------------------------------------------------------------


def extract_numbers(text: str) -> list[str]:
    """Numbers with thousands commas, in scientific notation, and plain, in that order."""
    with_commas = re.findall(r"-?\b\d{1,3}(?:,\d{3})+\b", text)
    scientific = re.findall(r"-?\d+(?:\.\d+)?[eE][+-]?\d+", text)
    plain = re.findall(r"-?(?:\d+\.\d+|\.\d+|\d+\b)(?![eE][+-]?\d+)(?![,\d])", text)
    return with_commas + scientific + plain


def is_number(text: str) -> bool:
    try:
        float(text.replace(",", ""))
    except ValueError:
        return False
    return True


def normalize_str(text: str) -> list[str | float]:
    """A number as a float rounded to 2 decimals; a string lower-cased, a single character
    padded with a space on either side (so "a" does not match inside words)."""
    text = text.strip()
    if is_number(text):
        return [round(float(text.replace(",", "")), 2)]
    text = text.lower()
    return [" " + text, text + " "] if len(text) == 1 else [text]


def key_sub_responses(response: str) -> list[str]:
    """Per line, the shortest tail after a conclusion phrase ("is ", "therefore ", "=" on the
    last line, ...); the whole (lower-cased) response when no line has one."""
    response = response.strip().strip(".").lower()
    # MMMU splits on ". " before a capital too, but the text is lower-cased first: lines only
    lines = re.split(r"\.\s(?=[A-Z])|\n", response)
    found = []
    for index, line in enumerate(lines):
        indicators = KEY_INDICATORS + (("=",) if index == len(lines) - 1 else ())
        shortest: str | None = None
        for indicator in indicators:
            if indicator in line:
                tail = line.split(indicator)[-1].strip()
                if not shortest or len(tail) < len(shortest):
                    shortest = tail
        if shortest and shortest.strip() not in TRIVIAL_TAILS:
            found.append(shortest)
    return found or [response]


def parse_open_response(response: str) -> list[str | float]:
    """The normalized candidates of an open answer: key sub-responses and the numbers in them."""
    keys = key_sub_responses(response)
    pieces = keys + [number for key in keys for number in extract_numbers(key)]
    out: list[str | float] = []
    for piece in pieces:
        for value in normalize_str(piece):
            if value not in out:
                out.append(value)
    return out


def eval_open(gold: str | Sequence[str], predictions: Sequence[str | float]) -> bool:
    """Right when a predicted number equals a gold number, or a gold string occurs inside a
    predicted string."""
    golds = [gold] if isinstance(gold, str) else list(gold)
    normalized = [value for answer in golds for value in normalize_str(str(answer))]
    for prediction in predictions:
        if isinstance(prediction, str):
            if any(isinstance(answer, str) and answer in prediction for answer in normalized):
                return True
        elif prediction in normalized:
            return True
    return False


# ---- scoring ------------------------------------------------------------------------------


def is_right(doc: Mapping[str, Any], response: str) -> bool:
    if response == "":  # lmms-eval's "API Error", which its aggregation leaves out
        return False
    if doc["question_type"] == MULTIPLE_CHOICE:
        index2ans = {
            letter: str(option)
            for letter, option in zip(string.ascii_uppercase, doc["options"], strict=False)
        }
        return parse_multi_choice_response(response, index2ans) == str(doc["answer"])
    return eval_open(doc["answer"], parse_open_response(response))


def process_results(doc: dict[str, Any], response: str) -> dict[str, float]:
    return {"accuracy": float(is_right(doc, response))}
