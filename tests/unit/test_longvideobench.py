"""LongVideoBench (val, video-only): prompt on a real MP4, lmms-eval's parser, accuracy per
duration group, and a missing video file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_lmms.scoring import strip_reasoning
from pytest_lmms.tasks import Task, load_task
from pytest_lmms.types import MediaPart, SampleResult
from tests.unit.video_fixtures import load_module, write_rows, write_video

pytest.importorskip("av")

LVB_YAML = Path(__file__).resolve().parents[2] / "benchmarks" / "longvideobench" / "longvideobench.yaml"
UTILS = load_module(LVB_YAML.with_name("utils.py"))
OPTIONS = ["a cup", "a book", "a lamp", "a phone", "a clock"]


def row(qid: str, video: str, correct: int, group: int, n_options: int = 5) -> dict[str, Any]:
    padded = OPTIONS[:n_options] + ["N/A"] * (5 - n_options)
    return {
        "video_id": video,
        "id": qid,
        "video_path": f"{video}.mp4",
        "subtitle_path": f"{video}_en.json",
        "correct_choice": correct,
        "question": "Which object is on the table when the man in the red shirt sits down?",
        **{f"option{index}": option for index, option in enumerate(padded)},
        "duration": 11.2,
        "duration_group": group,
        "question_category": "S2O",
        "topic_category": "NP-News-Programs",
        "starting_timestamp_for_subtitles": 0.0,
    }


@pytest.fixture
def lvb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Task:
    root = tmp_path / "longvideobench"
    write_video(root / "videos" / "86CxyhFV9MI.mp4")
    write_video(root / "videos" / "Z3pTqW5nOkE.mp4")
    monkeypatch.setenv("LONGVIDEOBENCH_DIR", str(root))
    rows = [
        row("86CxyhFV9MI_0", "86CxyhFV9MI", 2, 15, n_options=4),
        row("86CxyhFV9MI_1", "86CxyhFV9MI", 0, 15),
        row("kWv9tXa1AxY_0", "kWv9tXa1AxY", 1, 600),  # no video file
        row("Z3pTqW5nOkE_0", "Z3pTqW5nOkE", 3, 3600),
    ]
    write_rows(tmp_path / "rows.jsonl", rows)
    (tmp_path / "fixture.yaml").write_text(
        f"include: {LVB_YAML}\ntask: lvb_fixture\ndataset_path: rows.jsonl\n"
    )
    return load_task(tmp_path / "fixture.yaml")


def test_prompt_is_the_video_then_the_lmms_eval_text(lvb: Task, tmp_path: Path) -> None:
    (message,) = lvb.request(lvb.doc("86CxyhFV9MI_0")).messages
    video = message.content[0]
    assert isinstance(video, MediaPart) and video.type == "video"
    assert video.media.path == tmp_path / "longvideobench" / "videos" / "86CxyhFV9MI.mp4"
    assert video.sampling is not None and video.sampling.num_frames == 32
    # options up to the first "N/A", and lmms-eval's post prompt ends in a newline
    assert message.text == (
        "Which object is on the table when the man in the red shirt sits down?\n"
        "A. a cup\nB. a book\nC. a lamp\nD. a phone\n"
        "Answer with the option's letter from the given choices directly.\n"
    )


def test_the_official_json_candidates_work_too() -> None:
    assert UTILS.options({"candidates": ["x", "y"], "option0": "ignored"}) == ["x", "y"]
    assert UTILS.options(row("q", "v", 0, 15, n_options=3)) == ["a cup", "a book", "a lamp"]


@pytest.mark.parametrize(
    ("response", "letter"),
    [
        ("C", "C"),
        ("(C)", "C"),
        ("C.", "C"),
        ("C. a lamp", "C"),
        ("The best answer is C because the lamp is on.", "C"),
        ("A or C", "C"),  # several: the one occurring last
        ("(A) no, (C) yes", "C"),
        ("I believe the answer is a lamp", "C"),  # no letter, over five words: the option text
        ("c", None),  # lowercase letters are never read
        ("a lamp", None),  # option text in five words or fewer is not read
        ("", None),
    ],
)
def test_parser_rules(response: str, letter: str | None) -> None:
    index2ans = dict(zip("ABCD", OPTIONS[:4], strict=True))
    assert UTILS.parse_multi_choice_response(response, index2ans) == letter


def test_unparsed_answers_get_a_guess_seeded_by_the_question(lvb: Task) -> None:
    doc = lvb.doc("86CxyhFV9MI_0")
    guess = UTILS.seeded_guess(doc, list("ABCD"))
    assert guess in "ABCD" and guess == UTILS.seeded_guess(dict(doc), list("ABCD"))
    for unparsed in ("", "c", "a lamp"):
        assert lvb.score(doc, unparsed)["accuracy"] == float(guess == "C")


def test_reasoning_is_stripped_before_parsing(lvb: Task) -> None:
    doc = lvb.doc("86CxyhFV9MI_0")
    raw = "<think>Not A or B.</think>C"
    assert lvb.score(doc, strip_reasoning(raw))["accuracy"] == 1.0
    assert lvb.score(doc, raw)["accuracy"] == 0.0  # unstripped, " A " is read and "C" is glued to the tag


def test_accuracy_per_duration_group(lvb: Task) -> None:
    answers = {"86CxyhFV9MI_0": "C", "86CxyhFV9MI_1": "B", "kWv9tXa1AxY_0": "B", "Z3pTqW5nOkE_0": "A"}
    results = []
    for doc_id, response in answers.items():
        doc = lvb.doc(doc_id)
        results.append(
            SampleResult(
                "lvb",
                doc_id,
                doc["correct_choice"],
                response,
                response,
                lvb.score(doc, response),
                cluster_id=lvb.cluster_id(doc),
            )
        )
    estimates = lvb.aggregate(results)
    assert estimates["accuracy"].value == pytest.approx(0.5)
    assert estimates["accuracy"].n_clusters == 3  # three videos
    assert estimates["duration_15"].value == pytest.approx(0.5) and estimates["duration_15"].n == 2
    assert estimates["duration_600"].value == pytest.approx(1.0)
    assert estimates["duration_3600"].value == pytest.approx(0.0)
    assert "duration_60" not in estimates


def test_a_missing_video_is_named_when_its_media_is_read(lvb: Task) -> None:
    request = lvb.request(lvb.doc("kWv9tXa1AxY_0"))
    with pytest.raises(FileNotFoundError, match=r"videos/kWv9tXa1AxY\.mp4"):
        request.media[0].read_bytes()


def test_the_task_reads_the_hub_validation_split() -> None:
    task = load_task(LVB_YAML)
    assert (task.spec.dataset_path, task.spec.test_split) == ("longvideobench/LongVideoBench", "validation")
    assert task.spec.cluster_key == "video_id" and task.spec.generation.max_new_tokens == 32
