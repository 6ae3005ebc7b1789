"""LibriSpeech: transcribe read English speech; scored by corpus word error rate.

Scored as lmms-eval's ``librispeech`` tasks score it (``utils.librispeech_wer``, itself taken
from Qwen-Audio's ``evaluate_asr.py``): special tokens such as ``<|en|>`` removed, Whisper's
English normalizer then Whisper's basic normalizer on both transcripts, a word-level edit
distance, and summed errors over summed reference words, in percent.
"""

from __future__ import annotations

import io
import re
import wave
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_lmms.media import decode_audio, decoded_cell_bytes, wav_bytes
from pytest_lmms.scoring import normalize_basic, normalize_english, word_errors
from pytest_lmms.types import MediaRef

PROMPT = "Please recognize the speech and only output the recognized content:"
# LibriSpeech was recorded at 16 kHz; the hub copy's newer revisions store it upsampled to
# 192 kHz, twelve times the bytes for no more signal. Speech models take 16 kHz.
SAMPLE_RATE = 16000


def _cell_bytes(cell: Any) -> bytes | None:
    """The audio file's bytes, whatever form ``datasets`` or a local copy gives the cell in."""
    decoded = decoded_cell_bytes(cell)
    if decoded is not None:
        return decoded
    if isinstance(cell, (bytes, bytearray)):
        return bytes(cell)
    if isinstance(cell, Mapping):
        if cell.get("bytes"):
            return bytes(cell["bytes"])
        cell = cell.get("path")
    if isinstance(cell, (str, Path)) and Path(cell).is_file():
        return Path(cell).read_bytes()
    return None


def _wav_rate(data: bytes) -> int | None:
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    try:
        with wave.open(io.BytesIO(data)) as audio:
            return audio.getframerate()
    except (wave.Error, EOFError):
        return None


def audio_at_16_khz(cell: Any) -> Any:
    """The cell unchanged when it is a 16 kHz WAV (or cannot be read here: the harness then
    names it), else a lazy 16-bit mono WAV resampled to 16 kHz."""
    data = _cell_bytes(cell)
    if data is None or _wav_rate(data) == SAMPLE_RATE:
        return cell
    source = MediaRef("audio", data)
    return MediaRef(
        "audio", lambda: wav_bytes(decode_audio(source, SAMPLE_RATE), SAMPLE_RATE), mime="audio/wav"
    )


def doc_to_messages(doc: dict[str, Any]) -> list[dict[str, Any]]:
    content = [
        {"type": "audio", "audio": audio_at_16_khz(doc["audio"])},
        {"type": "text", "text": PROMPT},
    ]
    return [{"role": "user", "content": content}]


_SPECIAL_TOKEN = re.compile(r"<\|.*?\|>")
_SPACE_BEFORE_PUNCTUATION = re.compile(r" ?([!,.?;:])")


def transcript_words(text: str) -> list[str]:
    """The words a transcript is scored on.

    lmms-eval's ``remove_sp`` (special tokens to spaces, whitespace runs to one space, no
    space before ``! , . ? ; :``), then Whisper's English normalizer, then Whisper's basic
    normalizer (lmms-eval applies both to English). lmms-eval's last step, sacreBLEU's
    "none" tokenizer with lowercasing and punctuation-only tokens dropped, changes nothing
    after the basic normalizer, which already lowercased and removed all punctuation.
    """
    text = _SPECIAL_TOKEN.sub(" ", text)
    text = re.sub(r"\s+", " ", text)
    text = _SPACE_BEFORE_PUNCTUATION.sub(r"\1", text).lstrip(" ")
    return normalize_basic(normalize_english(text)).split()


def process_results(doc: dict[str, Any], response: str) -> dict[str, float]:
    """Per-utterance word errors and reference length; ``wer`` is this utterance's WER in
    percent (an empty normalized reference scores 0 if the transcript is empty too, else
    100). The reported WER is the corpus one, :func:`corpus_wer`."""
    errors, words = word_errors(transcript_words(doc["gt"]), transcript_words(response))
    utterance_wer = 100.0 * errors / words if words else 100.0 * bool(errors)
    return {"wer": utterance_wer, "wer_errors": float(errors), "wer_words": float(words)}


def corpus_wer(results: Sequence[Any]) -> float:
    """Summed word errors over summed reference words, in percent (lmms-eval reports
    ``wer * 100``); not the mean of the per-utterance rates."""
    words = sum(result.scores["wer_words"] for result in results)
    if words == 0:
        raise ValueError("no reference word in these utterances: the WER is undefined")
    return 100.0 * sum(result.scores["wer_errors"] for result in results) / words
