"""Video-MMMU: the three tracks' prompts on real MP4s, the letter parser, MMMU's open-answer
rules, accuracy per track, and missing videos."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_lmms.scoring import strip_reasoning
from pytest_lmms.tasks import GroupSpec, Task, load_specs
from pytest_lmms.types import MediaPart, SampleResult
from tests.unit.video_fixtures import load_module, task_on_rows, write_rows, write_video

pytest.importorskip("av")

VIDEOMMMU_YAML = Path(__file__).resolve().parents[2] / "benchmarks" / "videommmu" / "videommmu.yaml"
UTILS = load_module(VIDEOMMMU_YAML.with_name("utils.py"))
ADAPTATION_MCQ = (
    "You should watch and learn the video content. Then apply what you learned to answer the following "
    "multi-choice question. The image for this question is at the end of the video.\n"
)
ADAPTATION_OPEN = (
    "You should watch and learn the video content. Then apply what you learned to answer the following "
    "open-ended question. The image for this question is at the end of the video.\n"
)
IGNORE_QUIZ = "\nPlease ignore the Quiz question in last frame of the video."


def row(question_id: str, question: str, options: list[str], answer: str, kind: str, **extra: Any) -> dict:
    return {
        "id": question_id,
        "question": question,
        "options": options,
        "answer": answer,
        "question_type": kind,
        "link_selected": "https://www.youtube.com/watch?v=abc",
        **extra,
    }


PERCEPTION = [
    row(
        "test_Art_Theory_1",
        "Which painting technique does the lecturer name first?",
        ["Sfumato", "Chiaroscuro", "Impasto", "Glazing"],
        "B",
        "multiple-choice",
    )
]
COMPREHENSION = [
    row(
        "test_Physics_3",
        "If the mass doubles, what is the new speed?",
        ["A. 2 m/s", "B. 4 m/s", "C. 8 m/s", "D. 16 m/s"],  # already lettered
        "C",
        "multiple-choice",
    )
]
IMAGE = {"bytes": None, "path": "question.png"}
ADAPTATION = [
    row(
        "test_Accounting_5",
        "<image 1> What is the net income?",
        ["$1,200", "$1,500", "$2,000", "$2,500"],
        "A",
        "multiple-choice",
        image=IMAGE,
    ),
    row("test_Math_7", "<image 1> Compute the area of the triangle.", [], "24.5", "open", image=IMAGE),
]


@pytest.fixture
def media(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "video_mmmu"
    for folder, question_id in (("Art", "test_Art_Theory_1"), ("Science", "test_Physics_3")):
        write_video(root / folder / f"{question_id}.mp4")
    write_video(root / "Business" / "test_Accounting_5.mp4")  # no video for test_Math_7
    monkeypatch.setenv("VIDEOMMMU_DIR", str(root))
    return root


def track(tmp_path: Path, name: str, rows: list[dict]) -> Task:
    return task_on_rows(VIDEOMMMU_YAML, name, write_rows(tmp_path / f"{name}.jsonl", rows))


@pytest.fixture
def perception(media: Path, tmp_path: Path) -> Task:
    return track(tmp_path, "video_mmmu_perception", PERCEPTION)


@pytest.fixture
def comprehension(media: Path, tmp_path: Path) -> Task:
    return track(tmp_path, "video_mmmu_comprehension", COMPREHENSION)


@pytest.fixture
def adaptation(media: Path, tmp_path: Path) -> Task:
    return track(tmp_path, "video_mmmu_adaptation", ADAPTATION)


def test_the_three_tracks_and_their_group() -> None:
    specs = load_specs(VIDEOMMMU_YAML)
    (group,) = [spec for spec in specs if isinstance(spec, GroupSpec)]
    assert group.name == "video_mmmu"
    assert group.tasks == ("video_mmmu_perception", "video_mmmu_comprehension", "video_mmmu_adaptation")
    configs = {spec.name: spec.dataset_name for spec in specs if not isinstance(spec, GroupSpec)}
    assert {spec.dataset_path for spec in specs if not isinstance(spec, GroupSpec)} == {"lmms-lab/VideoMMMU"}
    assert configs == {
        "video_mmmu_perception": "Perception",
        "video_mmmu_comprehension": "Comprehension",
        "video_mmmu_adaptation": "Adaptation",
    }


def test_perception_prompt_letters_the_options(perception: Task, media: Path) -> None:
    (message,) = perception.request(perception.doc("test_Art_Theory_1")).messages
    video = message.content[0]
    assert isinstance(video, MediaPart) and video.type == "video"
    assert video.media.path == media / "Art" / "test_Art_Theory_1.mp4"
    # the last frame holds the Adaptation question's image: always sampled
    assert video.sampling is not None and video.sampling.num_frames == 32 and video.sampling.force_last
    assert message.text == (
        "Which painting technique does the lecturer name first?\n"
        "A. Sfumato\nB. Chiaroscuro\nC. Impasto\nD. Glazing" + IGNORE_QUIZ
    )


def test_comprehension_prompt_keeps_lettered_options(comprehension: Task, media: Path) -> None:
    request = comprehension.request(comprehension.doc("test_Physics_3"))
    assert request.media[0].path == media / "Science" / "test_Physics_3.mp4"
    assert request.messages[0].text == (
        "If the mass doubles, what is the new speed?\nA. 2 m/s\nB. 4 m/s\nC. 8 m/s\nD. 16 m/s" + IGNORE_QUIZ
    )


def test_adaptation_prompts(adaptation: Task) -> None:
    assert adaptation.request(adaptation.doc("test_Accounting_5")).messages[0].text == (
        ADAPTATION_MCQ + "<image 1> What is the net income?\nA. $1,200\nB. $1,500\nC. $2,000\nD. $2,500"
    )
    assert adaptation.request(adaptation.doc("test_Math_7")).messages[0].text == (
        ADAPTATION_OPEN + "<image 1> Compute the area of the triangle."
    )


@pytest.mark.parametrize(
    ("response", "letter"),
    [
        ("B", "B"),
        ("B.", "B"),
        ("(B)", "B"),
        ("**B**", None),  # no form matches "*B*"
        ("Answer: B", "B"),
        ("B: Chiaroscuro", "B"),
        ("The answer is B. Chiaroscuro gives the contrast.", "B"),
        ("A. is wrong; B. is right", "B"),  # several: the one written last
        ("C or D", "D"),
        ("The technique named first is clearly chiaroscuro", "B"),  # over five words: option text
        ("b", None),
        ("Chiaroscuro", None),  # option text in five words or fewer is not read
        ("", None),
    ],
)
def test_letter_parser(response: str, letter: str | None) -> None:
    index2ans = dict(zip("ABCD", ["Sfumato", "Chiaroscuro", "Impasto", "Glazing"], strict=True))
    assert UTILS.parse_multi_choice_response(response, index2ans) == letter


@pytest.mark.parametrize(
    ("response", "right"),
    [
        ("The area is 24.5", True),
        ("24.50 cm2", True),  # no key phrase: the whole answer, and its number
        ("24.50 square units", False),  # the "are " inside "square" leaves "units"
        ("Base times height over two.\nSo the area is 24.5 cm^2.", True),
        ("The area is 245", False),
        ("Therefore the area equals 49/2", False),  # fractions are not evaluated
        ("", False),
    ],
)
def test_open_answers(adaptation: Task, response: str, right: bool) -> None:
    assert adaptation.score(adaptation.doc("test_Math_7"), response)["accuracy"] == float(right)


def test_open_answer_rules() -> None:
    # the plain-number pattern also reads the "200" of "1,200"
    assert UTILS.parse_open_response("The total is 1,200 dollars.") == ["1,200 dollars", 1200.0, 200.0]
    assert UTILS.key_sub_responses("x = 3\nso y = 4") == ["4"]  # "=" counts on the last line only
    assert UTILS.eval_open("Chiaroscuro", UTILS.parse_open_response("The technique is chiaroscuro."))
    assert UTILS.normalize_str("a") == [" a", "a "]  # one letter must stand apart
    assert not UTILS.eval_open("a", ["banana"])
    assert UTILS.eval_open(["3", "three"], ["three apples"])


def test_multiple_choice_scores(perception: Task, comprehension: Task, adaptation: Task) -> None:
    assert perception.score(perception.doc("test_Art_Theory_1"), "(B)")["accuracy"] == 1.0
    assert comprehension.score(comprehension.doc("test_Physics_3"), "C. 8 m/s")["accuracy"] == 1.0
    assert adaptation.score(adaptation.doc("test_Accounting_5"), "B")["accuracy"] == 0.0
    assert perception.score(perception.doc("test_Art_Theory_1"), "")["accuracy"] == 0.0


def test_reasoning_is_stripped_before_parsing(perception: Task) -> None:
    doc = perception.doc("test_Art_Theory_1")
    raw = "<think>It could be D. Glazing, no.</think>B"
    assert perception.score(doc, strip_reasoning(raw))["accuracy"] == 1.0
    assert perception.score(doc, raw)["accuracy"] == 0.0  # unstripped, "D." is read


def test_accuracy_of_a_track(adaptation: Task) -> None:
    answers = {"test_Accounting_5": "A", "test_Math_7": "The area is 12"}
    results = [
        SampleResult("adaptation", doc_id, "", text, text, adaptation.score(adaptation.doc(doc_id), text))
        for doc_id, text in answers.items()
    ]
    estimate = adaptation.aggregate(results)["accuracy"]
    assert estimate.value == pytest.approx(0.5) and estimate.n == 2


def test_a_missing_video_is_named_when_its_media_is_read(adaptation: Task) -> None:
    request = adaptation.request(adaptation.doc("test_Math_7"))
    with pytest.raises(FileNotFoundError, match=r"Science/test_Math_7\.mp4"):
        request.media[0].read_bytes()


def test_an_id_of_no_known_subject_is_named() -> None:
    with pytest.raises(ValueError, match="test_Cooking_1"):
        UTILS.video_path({"id": "test_Cooking_1"})
