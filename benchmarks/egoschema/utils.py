"""EgoSchema (public 500-question subset): five-option questions on three-minute egocentric
videos, prompted and parsed as lmms-eval's egoschema task does.

Prompt: the video, then the question, each option on its own line (the options read "A. ...")
and "Answer with the option's letter from the given choices directly.". Parser: lmms-eval's
MMMU-style ``parse_multi_choice_response``; when it finds nothing it guesses a letter at
random, as lmms-eval does, with the guess seeded by the question so a rerun gives the same
score.

Videos are ``<root>/videos/<video_idx>.mp4`` (or .MP4); the root is ``metadata.video_dir``
(the YAML metadata, handed to doc_to_messages), else the ``EGOSCHEMA_DIR`` environment
variable, else ``$HF_HOME/egoschema``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_lmms.media import media_folder
from pytest_lmms.scoring import extracted, seeded_choice

NUM_FRAMES = 32  # lmms-eval leaves the count to the model; its video models default to 32
ENV_DIR = "EGOSCHEMA_DIR"
CACHE_NAME = "egoschema"
LETTERS = "ABCDE"
POST_PROMPT = "\nAnswer with the option's letter from the given choices directly."
PUNCTUATION = (",", ".", "!", "?", ";", ":", "'")


def media_root(metadata: Mapping[str, Any] | None = None) -> Path:
    return media_folder(metadata, ENV_DIR, CACHE_NAME)


def video_path(doc: Mapping[str, Any], metadata: Mapping[str, Any] | None = None) -> Path:
    """The video file; the .mp4 path when none exists (reading it then names the file)."""
    folder = media_root(metadata) / "videos"
    for suffix in (".mp4", ".MP4"):
        candidate = folder / f"{doc['video_idx']}{suffix}"
        if candidate.is_file():
            return candidate
    return folder / f"{doc['video_idx']}.mp4"


def doc_to_messages(doc: dict[str, Any], metadata: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    text = str(doc["question"]) + "".join("\n" + str(option) for option in doc["option"]) + POST_PROMPT
    sampling = {"num_frames": int((metadata or {}).get("num_frames", NUM_FRAMES))}
    video = {"type": "video", "video": str(video_path(doc, metadata)), "sampling": sampling}
    return [{"role": "user", "content": [video, {"type": "text", "text": text}]}]


def parse_multi_choice_response(response: str, index2ans: Mapping[str, str]) -> str | None:
    """lmms-eval's egoschema parser (after MMMU's): the letter, or None when no rule matched.

    Candidates are gathered in three passes that all run: "(X)", then "X " and then "X."
    in the response padded with spaces (after stripping surrounding punctuation). With none
    and more than five words, the options whose full text occurs in the response are the
    candidates. Of several candidates, the one whose last occurrence comes first wins.
    """
    for char in PUNCTUATION:
        response = response.strip(char)
    response = f" {response} "
    candidates = [f"({choice})" for choice in index2ans if f"({choice})" in response]
    candidates += [f"{choice} " for choice in index2ans if f"{choice} " in response]
    candidates += [f"{choice}." for choice in index2ans if f"{choice}." in response]
    by_letter = True
    if not candidates and len(response.split()) > 5:
        candidates = [choice for choice, text in index2ans.items() if text.lower() in response.lower()]
        by_letter = False
    if not candidates:
        return None
    if len(candidates) == 1:
        picked = candidates[0]
    elif by_letter:
        picked = min(candidates, key=response.rfind)  # first of equal positions: list order
    else:
        picked = min(candidates, key=lambda choice: response.lower().rfind(index2ans[choice].lower()))
    return picked.replace("(", "").replace(")", "").replace(".", "").strip()


def seeded_guess(doc: Mapping[str, Any], letters: Sequence[str]) -> str:
    return seeded_choice(f"egoschema:{doc['question_idx']}", letters)


def answer_index(answer: Any) -> int:
    """The gold option as 0-4: the dataset stores a digit; a letter works too."""
    text = str(answer).strip()
    return int(text) if text.isdigit() else LETTERS.index(text.upper())


def predicted_letter(doc: Mapping[str, Any], response: str) -> str:
    index2ans = {letter: str(option).strip() for letter, option in zip(LETTERS, doc["option"], strict=False)}
    return parse_multi_choice_response(response, index2ans) or seeded_guess(doc, list(index2ans))


def process_results(doc: dict[str, Any], response: str) -> dict[str, float]:
    letter = extracted(predicted_letter(doc, response))
    return {"accuracy": float(LETTERS.find(letter) == answer_index(doc["answer"]))}
