"""AIR-Bench chat: prompt, the official judge prompt, reading the judge's scores, aggregation."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from pytest_lmms.media import wav_bytes
from pytest_lmms.scoring import strip_reasoning
from pytest_lmms.scoring.judge import Judge, JudgeError
from pytest_lmms.tasks import Task, load_task
from pytest_lmms.types import Request, Response, SampleResult

AIR_BENCH_YAML = Path(__file__).resolve().parents[2] / "benchmarks" / "air_bench" / "air_bench_chat.yaml"
REFERENCE = "That it's more than six trillion dollars."

# (uniq_id, task_name, dataset_name, audio file): rows 0 and 5 ask about the same clip
ROWS = [
    (0, "speech_dialogue_QA", "fisher", "568.38_596.46.wav"),
    (1, "speech_QA", "common_voice_en", "common_voice_en_1.mp3"),
    (2, "sound_QA", "clotho", "rain.wav"),
    (3, "music_QA", "musiccaps", "GmGWvBNO8JI.wav"),
    (4, "speech_and_sound_QA", "audiocaps_cv", "mix_1.wav"),
    (5, "speech_dialogue_QA", "fisher", "568.38_596.46.wav"),
]
META_INFO = (
    '[{"speaker": "speaker 1", "speaking time": "(21.30,26.59)", "transcription": '
    '"i mean they they ah how what\'s the national debt six trillion plus"}]'
)
QUESTION = "What does the first speaker imply about the national debt?"


def utils_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("air_bench_utils", AIR_BENCH_YAML.with_name("utils.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def air_bench(tmp_path: Path) -> Task:
    (tmp_path / "clip.wav").write_bytes(wav_bytes(np.full(1600, 0x1000 / 32767, dtype=np.float32), 16000))
    with open(tmp_path / "rows.jsonl", "w") as handle:
        for uniq_id, task_name, dataset_name, path in ROWS:
            row = {
                "path": path,
                "question": QUESTION,
                "answer_gt": REFERENCE,
                "task_name": task_name,
                "dataset_name": dataset_name,
                "meta_info": META_INFO,
                "uniq_id": uniq_id,
                "audio": {"bytes": None, "path": "clip.wav"},
            }
            handle.write(json.dumps(row) + "\n")
    (tmp_path / "fixture.yaml").write_text(
        f"include: {AIR_BENCH_YAML}\ntask: air_bench_chat_fixture\ndataset_path: rows.jsonl\n"
    )
    return load_task(tmp_path / "fixture.yaml")


class FakeJudge:
    """Rates the reference 9 and a model answer "worth N" N, wherever each one stands."""

    def __init__(self, replies: list[str] | None = None) -> None:
        self.requests: list[Request] = []
        self.replies = replies

    def __call__(self, request: Request) -> Response:
        self.requests.append(request)
        if self.replies is not None:
            return Response(text=self.replies[len(self.requests) - 1])
        text = request.messages[-1].text
        first = re.search(r"\[The Start of Assistant 1s Answer\]\n(.*)\n\[The End of Assistant 1s", text)
        second = re.search(r"\[The Start of Assistant 2s Answer\]\n(.*)\n\[The End of Assistant 2s", text)
        assert first and second
        return Response(text=f"{self.rating(first.group(1))} {self.rating(second.group(1))}")

    @staticmethod
    def rating(answer: str) -> int:
        if answer == REFERENCE:
            return 9
        match = re.search(r"worth (\d+)", answer)
        return int(match.group(1)) if match else 1


def test_prompt_is_the_audio_then_the_question(air_bench: Task, tmp_path: Path) -> None:
    (message,) = air_bench.request(air_bench.doc("0")).messages
    assert [part.type for part in message.content] == ["audio", "text"]
    assert message.text == QUESTION
    assert message.content[0].media.read_bytes() == (tmp_path / "clip.wav").read_bytes()  # type: ignore[union-attr]


def test_the_official_judge_prompt_twice_with_positions_swapped(air_bench: Task) -> None:
    fake = FakeJudge()
    air_bench.score(air_bench.doc("0"), "The debt is huge.", judge=Judge(fake))
    first, second = fake.requests
    assert [m.role for m in first.messages] == ["user"]  # no system message, as in score_chat.py
    assert first.gen.max_new_tokens == 1024 and first.gen.temperature == 0.0
    assert first.messages[0].text == (
        "You are a helpful and precise assistant for checking the quality of the answer.\n"
        "[Detailed Audio Description]\n"
        '[{"speaker": "speaker 1", "speaking time": "(21.30,26.59)", "transcription": '
        '"i mean they they ah how what\'s the national debt six trillion plus"}]\n'
        "[Question]\n"
        "What does the first speaker imply about the national debt?\n"
        "[The Start of Assistant 1s Answer]\n"
        "That it's more than six trillion dollars.\n"
        "[The End of Assistant 1s Answer]\n"
        "[The Start of Assistant 2s Answer]\n"
        "The debt is huge.\n"
        "[The End of Assistant 2s Answer]\n"
        "[System]\n"
        "We would like to request your feedback on the performance of two AI assistants in response to the "
        "user question and audio description displayed above. AI assistants are provided with detailed audio "
        "descriptions and questions.\n"
        "Please rate the helpfulness, relevance, accuracy, and comprehensiveness of their responses. Each "
        "assistant receives an overall score on a scale of 1 to 10, where a higher score indicates better "
        "overall performance. Please output a single line containing only two values indicating the scores "
        "for Assistant 1 and 2, respectively. The two scores are separated by a space."
    )
    swapped = first.messages[0].text.replace(REFERENCE, "@@").replace("The debt is huge.", REFERENCE)
    assert second.messages[0].text == swapped.replace("@@", "The debt is huge.")


def test_the_score_is_the_mean_of_the_models_two_ratings(air_bench: Task) -> None:
    # first call: reference 8, model 6; second call (model first): model 5, reference 9
    judge = Judge(FakeJudge(replies=["8 6", "5 9"]))
    scores = air_bench.score(air_bench.doc("0"), "The debt is huge.", judge=judge)
    assert scores == {"score": 5.5, "cat_speech": 5.5, "reference_score": 8.5}
    assert judge.calls == 2


def test_without_a_judge_the_sample_cannot_be_scored(air_bench: Task) -> None:
    assert air_bench.uses_judge
    with pytest.raises(JudgeError) as error:
        air_bench.score(air_bench.doc("0"), "The debt is huge.")
    assert str(error.value) == "AIR-Bench chat is scored by an LLM judge: pass --judge-model=..."


@pytest.mark.parametrize(
    ("reply", "scores"),
    [
        ("8 7", (8.0, 7.0)),  # the official format
        ("10 1\n", (10.0, 1.0)),
        ("8 7.", (8.0, 7.0)),
        ("8, 7", (8.0, 7.0)),
        ("8 7\n\nAssistant 1 gives the correct amount; Assistant 2 is vague.", (8.0, 7.0)),
        ("Scores:\n9 6", (9.0, 6.0)),
        ("Scores: 9 6", (9.0, 6.0)),
        ("Assistant 1: 8\nAssistant 2: 7", (8.0, 7.0)),
        ("Assistant 2: 7, Assistant 1: 8", (8.0, 7.0)),
        ("Assistant 1 receives 8 and Assistant 2 receives 7.", (8.0, 7.0)),
        ("<think>Maybe 3 or 4, or 5.</think>7 9", (7.0, 9.0)),
        ("8.5 7", (8.5, 7.0)),
    ],
)
def test_reading_the_judges_scores(reply: str, scores: tuple[float, float]) -> None:
    assert utils_module().parse_scores(reply) == scores


@pytest.mark.parametrize(
    "reply",
    ["", "Both answers are good.", "8", "8 7 6", "On a scale of 1 to 10: 8 and 7", "12 7", "-1 7"],
)
def test_an_unreadable_reply_is_an_error_naming_it(reply: str) -> None:
    with pytest.raises(JudgeError, match=re.escape(repr(reply))):
        utils_module().parse_scores(reply)


def test_an_unreadable_reply_fails_the_sample(air_bench: Task) -> None:
    judge = Judge(FakeJudge(replies=["Assistant 1 is better.", "5 9"]))
    with pytest.raises(JudgeError, match="'Assistant 1 is better.'"):
        air_bench.score(air_bench.doc("0"), "The debt is huge.", judge=judge)


def test_a_reasoning_block_in_the_answer_is_not_judged(air_bench: Task) -> None:
    fake = FakeJudge()
    raw = "<think>Is it worth 2?</think>The debt is over six trillion, an answer worth 7."
    scores = air_bench.score(air_bench.doc("0"), strip_reasoning(raw), judge=Judge(fake))
    assert scores["score"] == 7.0
    assert "<think>" not in fake.requests[0].messages[0].text


def test_unknown_task_names_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown AIR-Bench chat task_name 'speech_ASR'"):
        utils_module().category_of({"task_name": "speech_ASR"})


def test_category_scores_and_their_average(air_bench: Task) -> None:
    worth = {"0": 6, "1": 9, "2": 7, "3": 3, "4": 8, "5": 6}
    judge = Judge(FakeJudge())
    results = []
    for doc_id, value in worth.items():
        doc = air_bench.doc(doc_id)
        response = f"An answer worth {value}."
        scores = air_bench.score(doc, response, judge=judge)
        results.append(
            SampleResult(
                air_bench.name,
                doc_id,
                doc["answer_gt"],
                response,
                response,
                scores,
                air_bench.cluster_id(doc),
            )
        )
    assert judge.calls == 12
    estimates = air_bench.aggregate(results)
    # speech (6, 9, 6) -> 7, sound 7, music 3, mixed 8: the average of the categories is 6.25,
    # while the mean over questions would be 6.5
    assert estimates["score"].value == pytest.approx(6.25)
    assert estimates["score"].method == "cluster-bootstrap" and estimates["score"].n_clusters == 5
    assert estimates["cat_speech"].value == pytest.approx(7.0)
    assert (
        estimates["cat_speech"].n == 3 and estimates["cat_speech"].n_clusters == 2
    )  # docs 0 and 5: one clip
    assert estimates["cat_sound"].value == 7.0 and estimates["cat_music"].value == 3.0
    assert estimates["cat_mixed"].value == 8.0
    assert estimates["reference_score"].value == 9.0
