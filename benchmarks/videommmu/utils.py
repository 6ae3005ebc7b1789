"""Video-MMMU: three tracks of questions on 300 lecture videos (Perception, Comprehension,
Adaptation), prompted and scored as lmms-eval's videommmu task, with the prompt texts of the
benchmark authors' task configuration.

Each question sees its video; in Adaptation the question's image is the video's last frame
(the dataset authors appended it), so every track samples frames with the last one forced.
Multiple-choice answers are read with lmms-eval's Video-MMMU letter parser; open answers with
MMMU's rules (key sub-responses after phrases like "is" / "therefore", numbers normalized to
two decimals, a gold string counting when it occurs in one of them). Both come from
``pytest_lmms.scoring.mmmu`` in lmms-eval's variant (``lenient_letters``,
``extended_indicators``).

Videos are ``<root>/<discipline>/<id>.mp4`` with the discipline (Art, Business, Science,
Medicine, Humanities, Engineering) given by the subject inside the id; the root is
``metadata.video_dir`` (the YAML metadata, handed to doc_to_messages), else the
``VIDEOMMMU_DIR`` environment variable, else ``$HF_HOME/video_mmmu``.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_lmms.media import media_folder
from pytest_lmms.scoring import mmmu
from pytest_lmms.scoring.mmmu import eval_open, letters_for

# re-exported ("x as x"): tests call it from this module
from pytest_lmms.scoring.mmmu import normalize_str as normalize_str

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

# the video folder of each of MMMU's six disciplines (lmms-eval's get_cache_dir)
VIDEO_FOLDERS = {
    "Art and Design": "Art",
    "Business": "Business",
    "Science": "Science",
    "Health and Medicine": "Medicine",
    "Humanities and Social Science": "Humanities",
    "Tech and Engineering": "Engineering",
}


# ---- files and prompts --------------------------------------------------------------------


def media_root(metadata: Mapping[str, Any] | None = None) -> Path:
    return media_folder(metadata, ENV_DIR, CACHE_NAME)


def discipline_of(question_id: str) -> str:
    """The video folder of an id ``<split>_<Subject>_<n>``, e.g. test_Art_Theory_12 -> Art."""
    subject = "_".join(question_id.split("_")[1:-1])
    for discipline, subjects in mmmu.DISCIPLINES.items():
        if subject in subjects:
            return VIDEO_FOLDERS[discipline]
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


# ---- answers (lmms-eval's variant of MMMU's rules) -------------------------------------------


def parse_multi_choice_response(response: str, index2ans: Mapping[str, str]) -> str | None:
    """lmms-eval's Video-MMMU letter parser: the letter, or None (no answer found).

    ``index2ans`` maps "A", "B", ... in order to the options (lmms-eval's
    get_multi_choice_info). The rules are ``mmmu.find_choice`` with ``lenient_letters``:
    "X." and "X:" first (both passes run), then "(X)", then "X ", then, over five words, the
    options whose text occurs in the response; of several, the one occurring last.
    """
    options = [str(text) for text in index2ans.values()]
    if list(index2ans) != letters_for(options):
        raise ValueError(f"index2ans must map A, B, ... in order, got {list(index2ans)}")
    return mmmu.find_choice(response, options, lenient_letters=True)


def key_sub_responses(response: str) -> list[str]:
    """MMMU's key sub-responses with lmms-eval's longer list of conclusion phrases."""
    return mmmu.key_subresponses(response, extended_indicators=True)


def parse_open_response(response: str) -> list[str | float]:
    """The normalized candidates of an open answer: key sub-responses and the numbers in them."""
    return mmmu.parse_open_response(response, extended_indicators=True)


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
