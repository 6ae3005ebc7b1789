"""LibriSpeech: the two tasks, the prompt with real WAV audio, normalization and corpus WER."""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import json
import wave
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from pytest_lmms.media import wav_bytes
from pytest_lmms.scoring import strip_reasoning
from pytest_lmms.tasks import Task, TaskSpec, load_specs
from pytest_lmms.types import SampleResult

LIBRISPEECH_YAML = Path(__file__).resolve().parents[2] / "benchmarks" / "librispeech" / "librispeech.yaml"
PROMPT = "Please recognize the speech and only output the recognized content:"

# reference transcripts in LibriSpeech's style (upper case, no punctuation)
TRANSCRIPTS = [
    "HE HOPED THERE WOULD BE STEW FOR DINNER",
    "TURNIPS AND CARROTS",
    "BRUISED POTATOES",
]


def wav_file(path: Path, seconds: float, sample_rate: int = 16000, noise: bool = False) -> bytes:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    signal = (
        np.random.default_rng(0).uniform(-0.3, 0.3, t.size) if noise else 0.3 * np.sin(2 * np.pi * 440 * t)
    )
    path.write_bytes(wav_bytes(signal.astype(np.float32), sample_rate))
    return path.read_bytes()


def utils_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("librispeech_utils", LIBRISPEECH_YAML.with_name("utils.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def rows(tmp_path: Path) -> Path:
    """Rows in lmms-lab/librispeech's schema, audio as real WAV files."""
    path = tmp_path / "rows.jsonl"
    with open(path, "w") as handle:
        for index, transcript in enumerate(TRANSCRIPTS):
            wav_file(tmp_path / f"clip{index}.wav", seconds=0.2 + 0.1 * index, noise=index == 2)
            row = {
                "audio": {"bytes": None, "path": str(tmp_path / f"clip{index}.wav")},
                "prompt": "<|startoftranscript|><|en|><|transcribe|><|en|><|notimestamps|><|wo_itn|>",
                "gt": transcript,
                "source": "librispeech_test_other",
                "task": "asr_en",
            }
            handle.write(json.dumps(row) + "\n")
    return path


def specs() -> dict[str, TaskSpec]:
    return {spec.name: spec for spec in load_specs(LIBRISPEECH_YAML) if isinstance(spec, TaskSpec)}


@pytest.fixture
def test_other(rows: Path) -> Task:
    return Task(dataclasses.replace(specs()["librispeech_test_other"], dataset_path=str(rows)))


def test_two_tasks_on_lmms_lab_librispeech() -> None:
    defined = specs()
    assert sorted(defined) == ["librispeech_test_clean", "librispeech_test_other"]
    for name, spec in defined.items():
        assert spec.dataset_path == "lmms-lab/librispeech"
        # at the pinned revision each split is its own config, both named like the task
        assert spec.dataset_name == name and spec.test_split == name
        assert spec.dataset_kwargs == {"revision": "808b3f07f3de8542dc3ca5150098f91d94f19821"}
        assert [(m.name, m.higher_is_better) for m in spec.metrics] == [("wer", False)]


def test_prompt_is_the_audio_then_lmms_evals_instruction(test_other: Task, tmp_path: Path) -> None:
    request = test_other.request(test_other.doc("1"))
    (message,) = request.messages
    assert [part.type for part in message.content] == ["audio", "text"]
    assert message.text == PROMPT
    audio = message.content[0].media  # type: ignore[union-attr]
    assert audio.read_bytes() == (tmp_path / "clip1.wav").read_bytes()
    assert request.gen.max_new_tokens == 256 and request.gen.temperature == 0.0


def test_192_khz_audio_is_sent_resampled_to_16_khz(tmp_path: Path) -> None:
    # the pinned revision stores every clip at 192 kHz; a 440 Hz tone must stay 440 Hz
    seconds, rate = 0.25, 192000
    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * rate)) / rate)
    (tmp_path / "rows.jsonl").write_text(
        json.dumps({"audio": {"bytes": None, "path": str(tmp_path / "hi.wav")}, "gt": "A", "prompt": ""})
        + "\n"
    )
    (tmp_path / "hi.wav").write_bytes(wav_bytes(tone.astype(np.float32), rate))
    task = Task(
        dataclasses.replace(specs()["librispeech_test_clean"], dataset_path=str(tmp_path / "rows.jsonl"))
    )
    (message,) = task.request(task.doc("0")).messages
    sent_rate, frames = read_wav(message.content[0].media.read_bytes())  # type: ignore[union-attr]
    assert sent_rate == 16000 and abs(len(frames) - 4000) <= 32
    spectrum = np.abs(np.fft.rfft(frames.astype(np.float64)))
    assert abs(np.argmax(spectrum) * 16000 / len(frames) - 440) < 10


def read_wav(data: bytes) -> tuple[int, np.ndarray]:
    with wave.open(io.BytesIO(data)) as audio:
        frames = np.frombuffer(audio.readframes(audio.getnframes()), dtype="<i2")
        return audio.getframerate(), frames


def test_decoded_audio_cells_become_wav_bytes(tmp_path: Path) -> None:
    from pytest_lmms.tasks._task import to_media

    def as_bytes(cell: Any) -> bytes:
        return to_media(cell, "audio", tmp_path).read_bytes()

    # datasets 3: {"array", "sampling_rate"}
    samples = np.linspace(-0.5, 0.5, 800, dtype=np.float32)
    rate, frames = read_wav(as_bytes({"array": samples, "sampling_rate": 8000, "path": "x.flac"}))
    assert rate == 8000 and frames.size == 800
    assert frames[0] == int(-0.5 * 32767) and frames[-1] == int(0.5 * 32767)

    # datasets 4+: a torchcodec AudioDecoder; its file's bytes are sent unchanged
    original = wav_file(tmp_path / "clip.wav", seconds=0.1)

    class Decoded:
        _hf_encoded = {"bytes": original, "path": "clip.wav"}

    assert as_bytes(Decoded()) == original

    # a decoder without its file: the samples (channels x frames) are mixed to mono
    class Samples:
        sample_rate = 16000
        data = type("Tensor", (), {"cpu": lambda self: self, "numpy": lambda self: np.full((2, 160), 0.25)})()

    class Decoder:
        def get_all_samples(self) -> Any:
            return Samples()

    rate, frames = read_wav(as_bytes(Decoder()))
    assert rate == 16000 and frames.size == 160 and set(frames.tolist()) == {int(0.25 * 32767)}

    # a file's cell: read from the path
    assert as_bytes({"bytes": None, "path": "clip.wav"}) == original


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("HE HOPED THERE WOULD BE STEW FOR DINNER", "he hoped there would be stew for dinner"),
        ("He hoped there would be stew for dinner.", "he hoped there would be stew for dinner"),
        ("<|en|>He hoped , there'd be stew!", "he hoped there would be stew"),
        ("Mr. Brown paid twenty five dollars", "mister brown paid 25"),  # "$25": basic drops "$"
        ("The colour, um, of the theatre", "the color of the theater"),
        (
            "It cost 3.5 pounds (roughly)",
            "it cost 3 5",
        ),  # "£3.5", then the basic normalizer drops "£" and "."
        ("", ""),
    ],
)
def test_transcript_normalization(text: str, words: str) -> None:
    assert utils_module().transcript_words(text) == words.split()


def result(task: Task, doc_id: str, response: str) -> SampleResult:
    doc = task.doc(doc_id)
    return SampleResult(task.name, doc_id, doc["gt"], response, response, task.score(doc, response))


def test_per_utterance_counts(test_other: Task) -> None:
    scores = test_other.score(test_other.doc("1"), "Turnips, carrots and.")
    # turnips carrots and / turnips and carrots: a deletion and an insertion
    assert scores == {"wer": pytest.approx(200 / 3), "wer_errors": 2.0, "wer_words": 3.0}
    assert test_other.score(test_other.doc("0"), "")["wer"] == 100.0


def test_corpus_wer_is_summed_errors_over_summed_words(test_other: Task) -> None:
    responses = ["He hoped there would be stew for dinner.", "Turnips carrots and", ""]
    results = [result(test_other, str(i), r) for i, r in enumerate(responses)]
    # errors 0 + 2 + 2 over 8 + 3 + 2 reference words; the mean per-utterance WER would be 55.6
    assert [r.scores["wer"] for r in results] == pytest.approx([0.0, 200 / 3, 100.0])
    estimate = test_other.aggregate(results)["wer"]
    assert estimate.value == pytest.approx(400 / 13)
    assert estimate.method == "bootstrap" and estimate.n == 3
    assert estimate.ci_low <= estimate.value <= estimate.ci_high


def test_corpus_wer_matches_jiwer_on_the_normalized_words(test_other: Task) -> None:
    jiwer = pytest.importorskip("jiwer")
    utils = utils_module()
    responses = ["He hoped there'd be stew for dinner.", "Turnips and parrots", "bruised tomatoes please"]
    results = [result(test_other, str(i), r) for i, r in enumerate(responses)]
    references = [" ".join(utils.transcript_words(t)) for t in TRANSCRIPTS]
    hypotheses = [" ".join(utils.transcript_words(r)) for r in responses]
    assert test_other.aggregate(results)["wer"].value == pytest.approx(
        100 * jiwer.wer(references, hypotheses)
    )


def test_a_reasoning_block_is_not_transcript(test_other: Task) -> None:
    raw = "<think>The speaker mentions stew, maybe soup.</think>He hoped there would be stew for dinner."
    assert test_other.score(test_other.doc("0"), strip_reasoning(raw))["wer"] == 0.0


def test_an_empty_reference_corpus_is_an_error() -> None:
    utils = utils_module()
    empty = SampleResult("l", "0", "", "x", "x", {"wer": 100.0, "wer_errors": 1.0, "wer_words": 0.0})
    with pytest.raises(ValueError, match="undefined"):
        utils.corpus_wer([empty])
