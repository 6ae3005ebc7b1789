"""Video-MME: four-option questions on videos, with or without the video's subtitles.

Prompts: the official one (Video-MME README) for frames only; lmms-eval's for frames +
subtitles, whose subtitles are the .srt lines shown at the sampled frames. The answer is read
with the official ``extract_characters_regex`` (eval_your_results.py): the first capital A-D
left after removing a few "The answer is"-style prefixes.

Videos are ``<root>/data/<videoID>.mp4`` (or .MP4 / .mkv) and subtitles
``<root>/subtitle/<videoID>.srt``, the layout lmms-eval unpacks the hub archives into; the
root is ``metadata.video_dir`` (the YAML metadata, handed to doc_to_messages), else the
``VIDEOMME_DIR`` environment variable, else ``$HF_HOME/videomme``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_lmms.media import media_folder
from pytest_lmms.scoring import extracted
from pytest_lmms.types import VideoSampling

NUM_FRAMES = 32  # lmms-eval's frame_num for Video-MME with subtitles
ENV_DIR = "VIDEOMME_DIR"
CACHE_NAME = "videomme"
VIDEO_SUFFIXES = (".mp4", ".MP4", ".mkv")

INSTRUCTION = (
    "Select the best answer to the following multiple-choice question based on the video. "
    "Respond with only the letter (A, B, C, or D) of the correct option."
)
INSTRUCTION_WITH_SUBTITLES = (
    "Select the best answer to the following multiple-choice question based on the video and the "
    "subtitles. Respond with only the letter (A, B, C, or D) of the correct option."
)
SUBTITLES_INTRO = "This video's subtitles are listed below: \n"
NO_SUBTITLES = "No subtitles available"
ANSWER_CUE = "The best answer is:"

# The official list as it runs: a missing comma joins its last four strings in pairs, so
# "The best option is" alone and "Best answer:" alone are never removed.
ANSWER_PREFIXES = (
    "The best answer is",
    "The correct answer is",
    "The answer is",
    "The answer",
    "The best option isThe correct option is",
    "Best answer:Best option:",
)
# Video-MME's .srt files wrap each line in this tag; lmms-eval keeps the text inside it
FONT_TAG = re.compile(r'<font color="white" size=".72c">(.*?)</font>')
ANY_TAG = re.compile(r"<[^>]+>")

DURATIONS = ("short", "medium", "long")
TASK_TYPES = (
    "Temporal Perception",
    "Spatial Perception",
    "Attribute Perception",
    "Action Recognition",
    "Object Recognition",
    "OCR Problems",
    "Counting Problem",
    "Temporal Reasoning",
    "Spatial Reasoning",
    "Action Reasoning",
    "Object Reasoning",
    "Information Synopsis",
)


# ---- files ------------------------------------------------------------------------------


def media_root(metadata: Mapping[str, Any] | None = None) -> Path:
    return media_folder(metadata, ENV_DIR, CACHE_NAME)


def video_path(doc: Mapping[str, Any], metadata: Mapping[str, Any] | None = None) -> Path:
    """The video file; the .mp4 path when none exists (reading it then names the file)."""
    stem = media_root(metadata) / "data" / str(doc["videoID"])
    for suffix in VIDEO_SUFFIXES:
        candidate = stem.with_name(stem.name + suffix)
        if candidate.is_file():
            return candidate
    return stem.with_name(stem.name + ".mp4")


def subtitle_path(doc: Mapping[str, Any], metadata: Mapping[str, Any] | None = None) -> Path:
    return media_root(metadata) / "subtitle" / f"{doc['videoID']}.srt"


def sampling_of(metadata: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {"num_frames": int((metadata or {}).get("num_frames", NUM_FRAMES))}


# ---- subtitles ----------------------------------------------------------------------------


def parse_srt_time(stamp: str) -> float:
    """``HH:MM:SS,mmm`` in seconds."""
    hours, minutes, rest = stamp.strip().split(":")
    seconds, millis = rest.replace(".", ",").split(",")
    return int(hours) * 3600 + int(minutes) * 60 + int(seconds) + int(millis) / 1000


def read_srt(path: Path) -> list[tuple[float, float, str]]:
    """(start s, end s, text) per block, in file order; a block's text lines joined by a space.

    As in lmms-eval, blocks with the same start and end keep the last text.
    """
    content = path.read_text(encoding="utf-8").replace("\r\n", "\n")
    blocks: dict[tuple[float, float], str] = {}
    for block in content.split("\n\n"):
        lines = block.strip("\n").split("\n")
        if len(lines) < 3 or not block.strip():
            continue
        start, end = lines[1].split(" --> ")
        blocks[(parse_srt_time(start), parse_srt_time(end))] = " ".join(lines[2:])
    return [(start, end, text) for (start, end), text in blocks.items()]


def subtitle_line(text: str) -> str | None:
    """What a subtitle block shows: the text inside Video-MME's font tag, else the text with
    any tags removed (lmms-eval drops a block without the tag); None when nothing is left."""
    match = FONT_TAG.search(text)
    shown = match.group(1) if match else ANY_TAG.sub("", text).strip()
    return shown or None


def video_frame_info(path: Path) -> tuple[int, float]:
    """(frame count, frames per second) from the container, without decoding."""
    if not path.is_file():
        raise FileNotFoundError(
            f"Video-MME video not found: {path} (set {ENV_DIR} to the folder holding data/)"
        )
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        total = int(stream.frames or 0)
        if not total and fps:
            seconds = (
                float(stream.duration * stream.time_base)
                if stream.duration is not None and stream.time_base is not None
                else (container.duration or 0) / 1_000_000
            )
            total = int(seconds * fps)
    if not total or not fps:
        raise ValueError(f"cannot read the frame count and rate of {path}")
    return total, fps


def subtitles_at_frames(
    blocks: Sequence[tuple[float, float, str]], frame_indices: Sequence[int], fps: float
) -> str:
    """The lines of the subtitle blocks shown at the given frames, in file order.

    A block covers frames ``int(start * fps)`` up to, not including, ``int(end * fps)``
    (lmms-eval's rule).
    """
    shown = sorted(
        {
            index
            for frame in frame_indices
            for index, (start, end, _) in enumerate(blocks)
            if int(start * fps) <= frame < int(end * fps)
        }
    )
    lines = (subtitle_line(blocks[index][2]) for index in shown)
    return "\n".join(line for line in lines if line is not None)


def subtitles_for(doc: Mapping[str, Any], metadata: Mapping[str, Any] | None = None) -> str:
    """The subtitle text of the frames the harness samples from the video, or the official
    "No subtitles available" when the video has no .srt file."""
    srt = subtitle_path(doc, metadata)
    if not srt.is_file():
        return NO_SUBTITLES
    from pytest_lmms.media import sample_indices

    total, fps = video_frame_info(video_path(doc, metadata))
    frames = sample_indices(total, fps, VideoSampling.from_dict(sampling_of(metadata)))
    return subtitles_at_frames(read_srt(srt), frames, fps)


# ---- prompts ------------------------------------------------------------------------------


def question_block(doc: Mapping[str, Any]) -> str:
    # options already read "A. ..." in lmms-lab/Video-MME
    return str(doc["question"]) + "\n" + "\n".join(str(option) for option in doc["options"])


def _messages(doc: Mapping[str, Any], text: str, metadata: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    video = {"type": "video", "video": str(video_path(doc, metadata)), "sampling": sampling_of(metadata)}
    return [{"role": "user", "content": [video, {"type": "text", "text": text}]}]


def doc_to_messages(doc: dict[str, Any], metadata: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    text = f"{INSTRUCTION}\n{question_block(doc)}\n{ANSWER_CUE}"
    return _messages(doc, text, metadata)


def doc_to_messages_with_subtitles(
    doc: dict[str, Any], metadata: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    subtitles = subtitles_for(doc, metadata)
    text = f"{SUBTITLES_INTRO}{subtitles}\n{INSTRUCTION_WITH_SUBTITLES}\n{question_block(doc)}\n{ANSWER_CUE}"
    return _messages(doc, text, metadata)


# ---- scoring ------------------------------------------------------------------------------


def extract_characters_regex(response: str) -> str:
    """The official parser: strip, drop the answer prefixes, then the first of A-D (capital
    only) anywhere in what is left, or "" when there is none. (The official code first
    returns "" for over ten words without A-D, which the search below gives anyway.)"""
    text = response.strip()
    for prefix in ANSWER_PREFIXES:
        text = text.replace(prefix, "")
    match = re.search(r"[ABCD]", text)
    return match.group(0) if match else ""


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def process_results(doc: dict[str, Any], response: str) -> dict[str, float]:
    right = float(extracted(extract_characters_regex(response)) == str(doc["answer"]).strip())
    return {
        "accuracy": right,
        f"duration_{doc['duration']}": right,
        f"task_{slug(str(doc['task_type']))}": right,
    }
