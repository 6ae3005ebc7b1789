"""LongVideoBench (validation, video-only): multiple-choice questions on videos of up to an
hour, prompted and parsed as lmms-eval's ``longvideobench_val_v`` task does (no subtitles).

Prompt: the video, then the question, the options as "A. ..." lines and "Answer with the
option's letter from the given choices directly.\\n" (lmms-eval's post prompt, newline
included). Parser: lmms-eval's MMMU-style ``parse_multi_choice_response``; when it finds
nothing it guesses a letter at random, as lmms-eval does, with the guess seeded by the
question so a rerun gives the same score.

Videos are ``<root>/videos/<video_path>``; the root is ``metadata.video_dir`` when the
harness hands over the YAML metadata, else the ``LONGVIDEOBENCH_DIR`` environment variable,
else ``$HF_HOME/longvideobench``.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytest_lmms.media import media_folder
from pytest_lmms.scoring import extracted, seeded_choice

NUM_FRAMES = 32  # lmms-eval leaves the count to the model; its video models default to 32
ENV_DIR = "LONGVIDEOBENCH_DIR"
CACHE_NAME = "longvideobench"
POST_PROMPT = "Answer with the option's letter from the given choices directly.\n"
PUNCTUATION = (",", ".", "!", "?", ";", ":", "'")
MISSING_OPTION = "N/A"


def media_root(metadata: Mapping[str, Any] | None = None) -> Path:
    return media_folder(metadata, ENV_DIR, CACHE_NAME)


def options(doc: Mapping[str, Any]) -> list[str]:
    """The candidates: the hub's option0..option4 up to the first "N/A", or the
    ``candidates`` list of the official lvb_val.json."""
    if doc.get("candidates") is not None:
        return [str(candidate) for candidate in doc["candidates"]]
    found = []
    for index in range(5):
        option = doc.get(f"option{index}")
        if option is None or option == MISSING_OPTION:
            break
        found.append(str(option))
    return found


def doc_to_messages(doc: dict[str, Any], metadata: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    lettered = "\n".join(
        f"{letter}. {option}" for letter, option in zip(string.ascii_uppercase, options(doc), strict=False)
    )
    text = f"{doc['question']}\n{lettered}\n{POST_PROMPT}"
    sampling = {"num_frames": int((metadata or {}).get("num_frames", NUM_FRAMES))}
    path = media_root(metadata) / "videos" / str(doc["video_path"])
    video = {"type": "video", "video": str(path), "sampling": sampling}
    return [{"role": "user", "content": [video, {"type": "text", "text": text}]}]


def parse_multi_choice_response(response: str, index2ans: Mapping[str, str]) -> str | None:
    """lmms-eval's LongVideoBench parser (after MMMU's): the letter, or None when no rule matched.

    After stripping surrounding punctuation and padding with spaces, the first pass that finds
    any gives the candidates: "(X)", then "X ", then "X.". With none and more than five
    words, the options whose text occurs in the response. Of several, the one occurring last
    ("(X)" or " X " for letters, the option text for texts); a letter none of those forms
    finds (rfind -1) loses.
    """
    for char in PUNCTUATION:
        response = response.strip(char)
    response = f" {response} "
    bracketed = [choice for choice in index2ans if f"({choice})" in response]
    candidates = bracketed or [choice for choice in index2ans if f"{choice} " in response]
    if not candidates:
        candidates = [choice for choice in index2ans if f"{choice}." in response]
    by_letter = True
    if not candidates and len(response.split()) > 5:
        candidates = [choice for choice, text in index2ans.items() if text.lower() in response.lower()]
        by_letter = False
    if not candidates:
        return None
    if len(candidates) == 1:
        return candidates[0]
    if not by_letter:
        positions = [response.lower().rfind(index2ans[choice].lower()) for choice in candidates]
    elif bracketed:
        positions = [response.rfind(f"({choice})") for choice in candidates]
    else:
        positions = [response.rfind(f" {choice} ") for choice in candidates]
    return candidates[positions.index(max(positions))]  # the first of equal maxima, as np.argmax


def seeded_guess(doc: Mapping[str, Any], letters: list[str]) -> str:
    return seeded_choice(f"longvideobench:{doc['id']}", letters)


def predicted_letter(doc: Mapping[str, Any], response: str) -> str:
    index2ans = dict(zip(string.ascii_uppercase, options(doc), strict=False))
    return parse_multi_choice_response(response, index2ans) or seeded_guess(doc, list(index2ans))


def process_results(doc: dict[str, Any], response: str) -> dict[str, float]:
    right = float(
        extracted(predicted_letter(doc, response)) == string.ascii_uppercase[int(doc["correct_choice"])]
    )
    return {"accuracy": right, f"duration_{doc['duration_group']}": right}
