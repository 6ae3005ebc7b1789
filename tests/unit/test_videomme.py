"""Video-MME: prompts (with and without subtitles, on real MP4 and SRT files), the official
answer parser, per-duration / per-task-type accuracy, and missing video files."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from pytest_lmms.scoring import strip_reasoning
from pytest_lmms.tasks import Task
from pytest_lmms.types import MediaPart, SampleResult
from tests.unit.video_fixtures import load_module, task_on_rows, write_rows, write_srt, write_video

pytest.importorskip("av")

VIDEOMME_YAML = Path(__file__).resolve().parents[2] / "benchmarks" / "videomme" / "videomme.yaml"
FONT = '<font color="white" size=".72c">{}</font>'
INSTRUCTION = (
    "Select the best answer to the following multiple-choice question based on the video. "
    "Respond with only the letter (A, B, C, or D) of the correct option."
)
INSTRUCTION_WITH_SUBTITLES = (
    "Select the best answer to the following multiple-choice question based on the video and the "
    "subtitles. Respond with only the letter (A, B, C, or D) of the correct option."
)
OPTIONS = "How many red balls are shown?\nA. One.\nB. Two.\nC. Three.\nD. Four."

# (question_id, videoID, duration, task_type, answer)
QUESTIONS = [
    ("001-1", "shortvid01", "short", "Counting Problem", "B"),
    ("001-2", "shortvid01", "short", "OCR Problems", "C"),
    ("001-3", "shortvid01", "short", "Counting Problem", "A"),
    ("002-1", "mediumvid1", "medium", "OCR Problems", "D"),
    ("002-2", "mediumvid1", "medium", "Counting Problem", "B"),
    ("003-1", "longvid001", "long", "Information Synopsis", "A"),
]


def row(question_id: str, video: str, duration: str, task_type: str, answer: str) -> dict[str, Any]:
    return {
        "video_id": question_id.split("-")[0],
        "duration": duration,
        "domain": "Knowledge",
        "sub_category": "Humanity & History",
        "url": f"https://www.youtube.com/watch?v={video}",
        "videoID": video,
        "question_id": question_id,
        "task_type": task_type,
        "question": "How many red balls are shown?",
        "options": ["A. One.", "B. Two.", "C. Three.", "D. Four."],
        "answer": answer,
    }


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("clip") / "clip.mp4")  # 2 s at 8 fps: 16 frames


@pytest.fixture
def media(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clip: Path) -> Path:
    """Videos for the short and long questions (none for the medium one), subtitles for the
    short video only, in lmms-eval's layout under $VIDEOMME_DIR."""
    root = tmp_path / "videomme"
    (root / "data").mkdir(parents=True)
    shutil.copy(clip, root / "data" / "shortvid01.mp4")
    shutil.copy(clip, root / "data" / "longvid001.mp4")
    write_srt(
        root / "subtitle" / "shortvid01.srt",
        [
            (0.0, 0.4, FONT.format("Hello there")),  # frames 0-2
            (0.4, 1.0, FONT.format("Count the balls")),  # frames 3-7
            (1.0, 1.4, "A plain line"),  # frames 8-10, no font tag
            (1.4, 2.0, FONT.format("Two balls")),  # frames 11-15
        ],
    )
    monkeypatch.setenv("VIDEOMME_DIR", str(root))
    return root


@pytest.fixture
def rows(tmp_path: Path) -> Path:
    return write_rows(tmp_path / "rows.jsonl", [row(*question) for question in QUESTIONS])


@pytest.fixture
def videomme(media: Path, rows: Path) -> Task:
    return task_on_rows(VIDEOMME_YAML, "videomme", rows)


@pytest.fixture
def with_subtitles(media: Path, rows: Path) -> Task:
    return task_on_rows(VIDEOMME_YAML, "videomme_w_subtitle", rows)


def test_prompt_is_the_video_then_the_official_text(videomme: Task, media: Path) -> None:
    (message,) = videomme.request(videomme.doc("001-1")).messages
    video, text = message.content
    assert isinstance(video, MediaPart) and video.type == "video"
    assert video.media.path == media / "data" / "shortvid01.mp4"
    assert video.sampling is not None and video.sampling.num_frames == 32
    assert text.type == "text"
    assert message.text == f"{INSTRUCTION}\n{OPTIONS}\nThe best answer is:"


def test_subtitle_prompt_lists_the_subtitles_of_the_sampled_frames(with_subtitles: Task) -> None:
    # 32 frames asked of a 16-frame video: every frame, so every block with a frame in it
    assert with_subtitles.request(with_subtitles.doc("001-1")).messages[0].text == (
        "This video's subtitles are listed below: \n"
        "Hello there\nCount the balls\nA plain line\nTwo balls\n"
        f"{INSTRUCTION_WITH_SUBTITLES}\n{OPTIONS}\nThe best answer is:"
    )


def test_a_video_without_srt_says_no_subtitles(with_subtitles: Task) -> None:
    text = with_subtitles.request(with_subtitles.doc("003-1")).messages[0].text
    assert text.startswith("This video's subtitles are listed below: \nNo subtitles available\nSelect")


def test_fewer_frames_show_only_the_subtitles_at_those_frames(media: Path, videomme: Task) -> None:
    utils = load_module(VIDEOMME_YAML.with_name("utils.py"))
    doc = videomme.doc("001-1")
    # 2 frames of 16: the segment centres, frames 4 (0.5 s) and 12 (1.5 s)
    assert utils.subtitles_for(doc, {"num_frames": 2}) == "Count the balls\nTwo balls"
    blocks = utils.read_srt(media / "subtitle" / "shortvid01.srt")
    assert blocks[2] == (1.0, 1.4, "A plain line")
    # a block covers [int(start * fps), int(end * fps)): frame 3 is the second block's, not the first's
    assert utils.subtitles_at_frames(blocks, [3], 8.0) == "Count the balls"
    assert utils.subtitles_at_frames(blocks, [2, 9], 8.0) == "Hello there\nA plain line"


def test_srt_times_and_font_tags() -> None:
    utils = load_module(VIDEOMME_YAML.with_name("utils.py"))
    assert utils.parse_srt_time("01:02:03,450") == pytest.approx(3723.45)
    assert utils.subtitle_line(FONT.format("inside") + " trailing") == "inside"
    assert utils.subtitle_line("<i>italic</i> text") == "italic text"
    assert utils.subtitle_line("<br>") is None


@pytest.mark.parametrize(
    ("doc_id", "response", "right"),
    [
        ("001-1", "B", 1.0),
        ("001-1", "(B)", 1.0),
        ("001-1", "B.", 1.0),
        ("001-1", "**B**", 1.0),
        ("001-1", "The answer is (B).", 1.0),
        ("001-1", "I think the answer is B", 1.0),  # "I" is no option letter
        ("001-2", "The best answer is C because the sign says so.", 1.0),
        ("001-1", "b", 0.0),  # lowercase letters are never read
        ("001-1", "Two.", 0.0),  # nor option text
        ("001-1", "A or B", 0.0),  # the first capital A-D counts: A
        ("001-1", "Answer: B", 0.0),  # "Answer:" is no prefix here; its "A" is read
        ("001-1", "Definitely B", 0.0),  # the "D" of "Definitely"
        ("001-1", "", 0.0),
    ],
)
def test_official_answer_extraction(videomme: Task, doc_id: str, response: str, right: float) -> None:
    assert videomme.score(videomme.doc(doc_id), response)["accuracy"] == right


def test_extraction_returns_the_letter_or_nothing() -> None:
    utils = load_module(VIDEOMME_YAML.with_name("utils.py"))
    assert utils.extract_characters_regex("  The correct answer is D ") == "D"
    assert utils.extract_characters_regex("The best option is B") == "B"  # "The" has no A-D
    assert utils.extract_characters_regex("Best answer: C") == "B"  # the official list never removes it alone
    assert utils.extract_characters_regex("none of these options is right at all, sorry") == ""


def test_reasoning_is_stripped_before_extraction(videomme: Task) -> None:
    doc = videomme.doc("001-1")
    raw = "<think>Maybe A, or C.</think>B"
    assert videomme.score(doc, strip_reasoning(raw))["accuracy"] == 1.0
    assert videomme.score(doc, raw)["accuracy"] == 0.0  # unstripped, the A in the reasoning is read


def test_each_question_scores_its_duration_and_task_type(videomme: Task) -> None:
    assert videomme.score(videomme.doc("002-1"), "D") == {
        "accuracy": 1.0,
        "duration_medium": 1.0,
        "task_ocr_problems": 1.0,
    }


def test_accuracy_per_duration_and_task_type(videomme: Task) -> None:
    answers = {"001-1": "B", "001-2": "A", "001-3": "A", "002-1": "D.", "002-2": "", "003-1": "(A)"}
    results = []
    for doc_id, response in answers.items():
        doc = videomme.doc(doc_id)
        results.append(
            SampleResult(
                "videomme",
                doc_id,
                doc["answer"],
                response,
                response,
                videomme.score(doc, response),
                cluster_id=videomme.cluster_id(doc),
            )
        )
    estimates = videomme.aggregate(results)
    assert estimates["accuracy"].value == pytest.approx(4 / 6)
    assert estimates["accuracy"].n_clusters == 3  # three videos
    assert estimates["duration_short"].value == pytest.approx(2 / 3)
    assert estimates["duration_medium"].value == pytest.approx(1 / 2)
    assert estimates["duration_long"].value == pytest.approx(1.0)
    assert estimates["task_counting_problem"].value == pytest.approx(2 / 3)
    assert estimates["task_ocr_problems"].value == pytest.approx(1 / 2)
    assert estimates["task_information_synopsis"].value == pytest.approx(1.0)
    assert estimates["task_ocr_problems"].n == 2
    assert "task_spatial_reasoning" not in estimates  # no question of that type in this run


def test_a_missing_video_is_named_when_its_media_is_read(videomme: Task, media: Path) -> None:
    request = videomme.request(videomme.doc("002-1"))
    with pytest.raises(FileNotFoundError, match="mediumvid1.mp4"):
        request.media[0].read_bytes()


def test_subtitles_without_their_video_name_the_video(with_subtitles: Task, media: Path) -> None:
    write_srt(media / "subtitle" / "mediumvid1.srt", [(0.0, 1.0, FONT.format("hi"))])
    with pytest.raises(FileNotFoundError, match=r"mediumvid1\.mp4.*VIDEOMME_DIR"):
        with_subtitles.request(with_subtitles.doc("002-1"))


def test_other_video_containers_are_found(videomme: Task, media: Path) -> None:
    (media / "data" / "mediumvid1.mkv").write_bytes(b"")
    request = videomme.request(videomme.doc("002-1"))
    assert request.media[0].path == media / "data" / "mediumvid1.mkv"


def test_cluster_is_the_video(videomme: Task) -> None:
    assert videomme.cluster_id(videomme.doc("001-3")) == "shortvid01"


def test_metadata_sets_the_folder_and_frame_count(videomme: Task, tmp_path: Path) -> None:
    utils = load_module(VIDEOMME_YAML.with_name("utils.py"))
    doc = videomme.doc("001-1")
    elsewhere = tmp_path / "elsewhere"
    for function in (utils.doc_to_messages, utils.doc_to_messages_with_subtitles):
        (message,) = function(doc, {"num_frames": 8, "video_dir": str(elsewhere)})
        video = message["content"][0]
        assert video["video"] == str(elsewhere / "data" / "shortvid01.mp4")
        assert video["sampling"] == {"num_frames": 8}


def test_without_a_setting_videos_are_under_hf_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    utils = load_module(VIDEOMME_YAML.with_name("utils.py"))
    monkeypatch.delenv("VIDEOMME_DIR", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert utils.video_path({"videoID": "abc"}) == tmp_path / "hf" / "videomme" / "data" / "abc.mp4"


def test_both_tasks_read_the_hub_dataset() -> None:
    from pytest_lmms.tasks import TaskSpec, load_specs

    specs = {spec.name: spec for spec in load_specs(VIDEOMME_YAML) if isinstance(spec, TaskSpec)}
    assert set(specs) == {"videomme", "videomme_w_subtitle"}
    for spec in specs.values():
        assert (spec.dataset_path, spec.test_split, spec.doc_id_column) == (
            "lmms-lab/Video-MME",
            "test",
            "question_id",
        )
        assert spec.generation.max_new_tokens == 16 and spec.generation.temperature == 0.0
