"""Every hub benchmark on rows built from its dataset's published schema
(/work/shared/datasets/<benchmark>.json: exact column names and types, string or integer ids,
"nan" strings, nested records, Image / Audio features, every split or config the YAML reads),
saved with ``save_to_disk`` and read back through the real ``datasets`` path, in a real
pytest session. Each test asserts that every metric row the benchmark's YAML declares is in
results.json with a value: a column the code reads under another name empties those rows."""

from __future__ import annotations

import contextlib
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from pytest_lmms.media import wav_bytes
from pytest_lmms.scoring.mmmu import DISCIPLINES
from pytest_lmms.tasks import TaskSpec, load_specs, load_task
from tests.unit.video_fixtures import write_srt, write_video

datasets = pytest.importorskip("datasets")
# imported here, once: an in-process pytester run cannot import torch a second time
with contextlib.suppress(Exception):  # without it the audio cases skip
    import torchcodec.decoders  # noqa: F401

ROOT = Path(__file__).resolve().parents[2] / "benchmarks"
STRING = datasets.Value("string")


# ---- media and session helpers ----------------------------------------------------------------


def png(shade: int) -> dict[str, Any]:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (shade % 256, 0, 0)).save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}


def wav(seconds: float, rate: int) -> dict[str, Any]:
    tone = 0.1 * np.sin(2 * np.pi * 440 * np.arange(int(rate * seconds)) / rate)
    return {"bytes": wav_bytes(tone.astype(np.float32), rate), "path": None}


def strings(*names: str) -> dict[str, Any]:
    return {name: STRING for name in names}


def declared_metrics(yaml: str, task: str) -> list[str]:
    specs = [spec for spec in load_specs(ROOT / yaml) if isinstance(spec, TaskSpec)]
    return [metric.name for spec in specs if spec.name == task for metric in spec.metrics]


def save(project: pytest.Pytester, name: str, splits: dict[str, Any]) -> str:
    """A DatasetDict of ``split -> (rows, features)`` saved as ``name``, as save_to_disk of
    ``load_dataset(ID, CONFIG)`` would leave it."""
    built = {
        split: datasets.Dataset.from_dict(rows, features=datasets.Features(features), split=split)
        for split, (rows, features) in splits.items()
    }
    datasets.DatasetDict(built).save_to_disk(str(project.path / name))
    return name


def local_yaml(project: pytest.Pytester, yaml: str, task: str, copy: str, extra: str = "") -> str:
    """A YAML taking one task of the shipped file as it is, only reading the local copy."""
    name = f"{task}_local"
    project.makefile(
        ".yaml", **{name: f"include: {ROOT / yaml}::{task}\ntask: {name}\ndataset_path: {copy}\n{extra}"}
    )
    return name


def run(project: pytest.Pytester, *args: str) -> dict[str, Any]:
    result = project.runpytest("--lmms-output=results", "--lmms-run-name=r", "--no-lmms-cache", *args)
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0 and outcomes.get("errors", 0) == 0, result.stdout.str()[-4000:]
    return dict(json.loads((project.path / "results" / "r" / "results.json").read_text())["tasks"])


def assert_every_declared_row(tasks: dict[str, Any], yaml: str, task: str, n: int) -> None:
    info = tasks[f"{task}_local"]
    assert info["n"] == n and info["failed"] == 0, info
    declared = declared_metrics(yaml, task)
    missing = [name for name in declared if name not in info["metrics"]]
    assert not missing, f"{task}: declared rows absent from results.json: {missing}"
    for name in declared:
        value = info["metrics"][name]["value"]
        assert isinstance(value, (int, float)) and math.isfinite(value), (name, value)


def samples(project: pytest.Pytester, task: str) -> dict[str, dict[str, Any]]:
    """The run's scored samples by document id."""
    lines = (project.path / "results" / "r" / f"samples_{task}_local.jsonl").read_text().splitlines()
    return {record["doc_id"]: record for record in map(json.loads, lines)}


def prompt(project: pytest.Pytester, task: str, doc_id: str) -> str:
    """The text the model is shown for one document of the local copy (the same datasets
    path the session read)."""
    local = load_task(project.path / f"{task}_local.yaml")
    return local.request(local.doc(doc_id)).messages[0].text


# ---- MME ---------------------------------------------------------------------------------------

MME_CATEGORIES = [
    "existence",
    "count",
    "position",
    "color",
    "posters",
    "celebrity",
    "scene",
    "landmark",
    "artwork",
    "OCR",
    "commonsense_reasoning",
    "numerical_calculation",
    "text_translation",
    "code_reasoning",
]


def test_mme_on_its_published_schema(lmms_project: pytest.Pytester) -> None:
    rows: dict[str, list[Any]] = {k: [] for k in ("question_id", "image", "question", "answer", "category")}
    for shade, category in enumerate(MME_CATEGORIES):
        for answer in ("Yes", "No"):  # two questions per image, sharing its question_id
            rows["question_id"].append(f"{category}/{shade:04d}.png")
            rows["image"].append(png(shade))
            rows["question"].append("Is a python code shown in the picture? Please answer yes or no.")
            rows["answer"].append(answer)
            rows["category"].append(category)
    features = {**strings("question_id", "question", "answer", "category"), "image": datasets.Image()}
    copy = save(lmms_project, "mme_copy", {"test": (rows, features)})
    local_yaml(lmms_project, "mme/mme.yaml", "mme", copy)
    tasks = run(lmms_project, "--model=random:0")
    assert_every_declared_row(tasks, "mme/mme.yaml", "mme", 28)
    # random:0 answers "0" to a question without choices: "other", wrong everywhere
    assert tasks["mme_local"]["metrics"]["mme_perception"]["value"] == 0.0
    assert prompt(lmms_project, "mme", "0") == (
        "Is a python code shown in the picture?\nAnswer the question using a single word or phrase."
    )


# ---- MMBench -----------------------------------------------------------------------------------

MMBENCH_L2 = (
    "coarse_perception",
    "finegrained_perception (instance-level)",
    "finegrained_perception (cross-instance)",
    "logic_reasoning",
    "relation_reasoning",
    "attribute_reasoning",
)
MMBENCH_CATEGORIES = [
    "action_recognition",
    "attribute_comparison",
    "attribute_recognition",
    "celebrity_recognition",
    "function_reasoning",
    "future_prediction",
    "identity_reasoning",
    "image_emotion",
    "image_quality",
    "image_scene",
    "image_style",
    "image_topic",
    "nature_relation",
    "object_localization",
    "ocr",
    "physical_property_reasoning",
    "physical_relation",
    "social_relation",
    "spatial_relationship",
    "structuralized_imagetext_understanding",
]
MMBENCH_COLUMNS = ("index", "question", "hint", "answer", "A", "B", "C", "D", "category")
MMBENCH_COLUMNS += ("source", "L2-category", "comment", "split")


def mmbench_split(split: str, answers: bool) -> tuple[dict[str, list[Any]], dict[str, Any]]:
    rows: dict[str, list[Any]] = {k: [] for k in (*MMBENCH_COLUMNS, "image")}
    for number, category in enumerate(MMBENCH_CATEGORIES):
        # question 0 has two options and no hint: "nan" strings, as lmms-lab/MMBench stores them
        short = number == 0
        for rotation in range(2 if short else 1):  # rotations share index % 1,000,000
            values = {
                "index": str(rotation * 1_000_000 + number),
                "question": f"Question {number}?",
                "hint": "nan" if short else f"Hint {number}.",
                "answer": "AB"[rotation] if answers else "nan",
                "A": "cat" if rotation == 0 else "dog",
                "B": "dog" if rotation == 0 else "cat",
                "C": "nan" if short else "fish",
                "D": "nan" if short else "bird",
                "category": category,
                "source": "fixture",
                "L2-category": MMBENCH_L2[number % len(MMBENCH_L2)],
                "comment": "nan",
                "split": split,
            }
            for key, value in values.items():
                rows[key].append(value)
            rows["image"].append(png(number))
    return rows, {**strings(*MMBENCH_COLUMNS), "image": datasets.Image()}


def test_mmbench_on_its_published_schema(lmms_project: pytest.Pytester) -> None:
    copy = save(
        lmms_project,
        "mmbench_copy",
        {"dev": mmbench_split("dev", True), "test": mmbench_split("test", False)},
    )
    local_yaml(lmms_project, "mmbench/mmbench.yaml", "mmbench_en_dev", copy)
    local_yaml(lmms_project, "mmbench/mmbench_test.yaml", "mmbench_en_test", copy)
    tasks = run(lmms_project, "--model=random:0")
    assert_every_declared_row(tasks, "mmbench/mmbench.yaml", "mmbench_en_dev", 21)
    assert_every_declared_row(tasks, "mmbench/mmbench_test.yaml", "mmbench_en_test", 21)
    for abbreviation in ("CP", "FP-S", "FP-C", "LR", "RR", "AR"):
        assert tasks["mmbench_en_dev_local"]["metrics"][f"l2_{abbreviation}"]["n"] >= 3
    # the question with absent options and hint: no "nan" line, no hint line
    assert prompt(lmms_project, "mmbench_en_dev", "0") == (
        "Question 0?\nA. cat\nB. dog\nAnswer with the option's letter from the given choices directly."
    )
    assert prompt(lmms_project, "mmbench_en_dev", "1") == (
        "Hint 1.\nQuestion 1?\nA. cat\nB. dog\nC. fish\nD. bird\n"
        "Answer with the option's letter from the given choices directly."
    )


# ---- MMMU --------------------------------------------------------------------------------------

MMMU_COLUMNS = ("id", "question", "options", "explanation", "img_type", "answer", "topic_difficulty")
MMMU_COLUMNS += ("question_type", "subfield")


def mmmu_split(split: str, subjects: Sequence[str]) -> tuple[dict[str, list[Any]], dict[str, Any]]:
    rows: dict[str, list[Any]] = {k: [] for k in (*MMMU_COLUMNS, *(f"image_{n}" for n in range(1, 8)))}
    for number, subject in enumerate(subjects, 1):
        choice = number % 2 == 0
        values = {
            "id": f"{split}_{subject}_{number}",
            "question": f"<image 1> What does <image 2> show in {subject}?",
            "options": "['a circle', 'a square', 'a line']" if choice else "[]",
            "explanation": "",
            "img_type": "['Diagrams']",
            "answer": ("B" if choice else "['4', 'four']") if split != "test" else "?",
            "topic_difficulty": "Medium",
            "question_type": "multiple-choice" if choice else "open",
            "subfield": subject,
        }
        for key, value in values.items():
            rows[key].append(value)
        for n in range(1, 8):
            rows[f"image_{n}"].append(png(n) if n <= 2 else None)  # unused images are null
    features = {**strings(*MMMU_COLUMNS), **{f"image_{n}": datasets.Image() for n in range(1, 8)}}
    return rows, features


def test_mmmu_on_its_published_schema(lmms_project: pytest.Pytester) -> None:
    subjects = [subject for group in DISCIPLINES.values() for subject in group]
    assert len(subjects) == 30
    splits = {"dev": mmmu_split("dev", subjects[:2]), "validation": mmmu_split("validation", subjects)}
    splits["test"] = mmmu_split("test", subjects[:4])
    copy = save(lmms_project, "mmmu_copy", splits)
    local_yaml(lmms_project, "mmmu/mmmu_val.yaml", "mmmu_val", copy)
    local_yaml(lmms_project, "mmmu/mmmu_test.yaml", "mmmu_test", copy)
    tasks = run(lmms_project, "--model=random:0")
    assert_every_declared_row(tasks, "mmmu/mmmu_val.yaml", "mmmu_val", 30)
    assert_every_declared_row(tasks, "mmmu/mmmu_test.yaml", "mmmu_test", 4)


# ---- MathVista ---------------------------------------------------------------------------------

MATHVISTA_SKILLS = (
    "algebraic reasoning",
    "arithmetic reasoning",
    "geometry reasoning",
    "logical reasoning",
    "numeric commonsense",
    "scientific reasoning",
    "statistical reasoning",
)
MATHVISTA_TASKS = (
    "figure question answering",
    "geometry problem solving",
    "math word problem",
    "textbook question answering",
    "visual question answering",
)
MATHVISTA_METADATA = {
    "category": STRING,
    "context": STRING,
    "grade": STRING,
    "img_height": datasets.Value("int64"),
    "img_width": datasets.Value("int64"),
    "language": STRING,
    "skills": datasets.Sequence(STRING),
    "source": STRING,
    "split": STRING,
    "task": STRING,
}


def mathvista_rows() -> tuple[dict[str, list[Any]], dict[str, Any]]:
    # (question_type, answer_type, choices, unit, precision, answer)
    kinds = [
        ("multi_choice", "text", ["3cm", "6cm", "9cm"], None, None, "6cm"),
        ("free_form", "integer", None, "g", None, "1000"),
        ("free_form", "float", None, None, 1.0, "0.6"),
        ("free_form", "float", None, "$", 2.0, "1.45"),
        ("free_form", "list", None, None, None, "[2007, 2008]"),
    ]
    columns = ("pid", "question", "image", "decoded_image", "choices", "unit", "precision", "answer")
    rows: dict[str, list[Any]] = {
        k: [] for k in (*columns, "question_type", "answer_type", "metadata", "query")
    }
    for number, (task, kind) in enumerate(zip(MATHVISTA_TASKS, kinds, strict=True), 1):
        question_type, answer_type, choices, unit, precision, answer = kind
        skills = [MATHVISTA_SKILLS[(2 * number) % 7], MATHVISTA_SKILLS[(2 * number + 1) % 7]]
        values = {
            "pid": str(number),
            "question": f"Question {number}?",
            "image": f"images/{number}.jpg",
            "decoded_image": png(number),
            "choices": choices,
            "unit": unit,
            "precision": precision,
            "answer": answer,
            "question_type": question_type,
            "answer_type": answer_type,
            "metadata": {
                "category": "math-targeted-vqa",
                "context": "bar chart",
                "grade": "not applicable",
                "img_height": 8,
                "img_width": 8,
                "language": "english",
                "skills": skills,
                "source": "fixture",
                "split": "testmini",
                "task": task,
            },
            "query": f"Question {number}?",
        }
        for key, value in values.items():
            rows[key].append(value)
    features = {
        **strings("pid", "question", "image", "unit", "answer", "question_type", "answer_type", "query"),
        "decoded_image": datasets.Image(),
        "choices": datasets.Sequence(STRING),
        "precision": datasets.Value("float64"),
        "metadata": MATHVISTA_METADATA,
    }
    return rows, features


def test_mathvista_on_its_published_schema(lmms_project: pytest.Pytester) -> None:
    rows, features = mathvista_rows()
    covered = {skill for record in rows["metadata"] for skill in record["skills"]}
    assert covered == set(MATHVISTA_SKILLS)
    copy = save(lmms_project, "mathvista_copy", {"testmini": (rows, features)})
    local_yaml(lmms_project, "mathvista/mathvista_testmini.yaml", "mathvista_testmini", copy)
    # the model answers "6 cm" (random:0 with answer=text would say "6cm"): the nearest choice
    tasks = run(lmms_project, "--model=random:0", "--model-args=fallback=6 cm")
    assert_every_declared_row(tasks, "mathvista/mathvista_testmini.yaml", "mathvista_testmini", 5)
    assert samples(lmms_project, "mathvista_testmini")["1"]["scores"]["accuracy"] == 1.0


# ---- LibriSpeech -------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["librispeech_test_clean", "librispeech_test_other"])
def test_librispeech_on_its_published_schema(lmms_project: pytest.Pytester, task: str) -> None:
    pytest.importorskip("torchcodec.decoders", reason="datasets decodes Audio columns with torchcodec")
    # at the pinned revision each split is its own config of one split, audio at 192 kHz
    rows = {
        "audio": [wav(0.1, 192000), wav(0.15, 192000)],
        "prompt": ["", ""],
        "gt": ["HELLO WORLD", "GOOD MORNING"],
        "source": [task] * 2,
        "task": ["asr"] * 2,
    }
    features = {"audio": datasets.Audio(sampling_rate=192000), **strings("prompt", "gt", "source", "task")}
    copy = save(lmms_project, f"{task}_copy", {task: (rows, features)})
    local_yaml(lmms_project, "librispeech/librispeech.yaml", task, copy)
    tasks = run(lmms_project, "--model=random:0", "--model-args=fallback=hello world")
    assert_every_declared_row(tasks, "librispeech/librispeech.yaml", task, 2)
    assert tasks[f"{task}_local"]["metrics"]["wer"]["value"] == pytest.approx(50.0)


# ---- AIR-Bench ---------------------------------------------------------------------------------

AIR_TASK_NAMES = {
    "speech": ("speech_QA", "speech_dialogue_QA"),
    "sound": ("sound_QA", "sound_generation_QA"),
    "music": ("music_QA", "music_generation_analysis_QA"),
    "mixed": ("speech_and_sound_QA", "speech_and_music_QA"),
}


def test_air_bench_on_its_published_schema(lmms_project: pytest.Pytester) -> None:
    pytest.importorskip("torchcodec.decoders", reason="datasets decodes Audio columns with torchcodec")
    columns = ("path", "question", "answer_gt", "task_name", "dataset_name", "meta_info")
    features = {
        **strings(*columns),
        "uniq_id": datasets.Value("int64"),
        "audio": datasets.Audio(sampling_rate=16000),
    }
    splits = {}
    uniq_id = 0
    for split, task_names in AIR_TASK_NAMES.items():
        rows: dict[str, list[Any]] = {k: [] for k in features}
        for task_name in task_names:
            uniq_id += 1
            values = {
                "path": f"{uniq_id}.wav",
                "question": "What is happening in the audio?",
                "answer_gt": "A tone plays.",
                "task_name": task_name,
                "dataset_name": "clotho",
                # the scripted judge replies what follows "reply " in its prompt: "8 7"
                "meta_info": "A steady 440 Hz tone. reply 8 7",
                "uniq_id": uniq_id,
                "audio": wav(0.1, 16000),
            }
            for key, value in values.items():
                rows[key].append(value)
        splits[split] = (rows, features)
    copy = save(lmms_project, "air_copy", splits)
    local_yaml(lmms_project, "air_bench/air_bench_chat.yaml", "air_bench_chat", copy)
    tasks = run(lmms_project, "--model=random:0", "--judge-model=scripted:judge")
    assert_every_declared_row(tasks, "air_bench/air_bench_chat.yaml", "air_bench_chat", 8)
    # reference first: (8, 7) -> model 7; model first: (8, 7) -> model 8
    assert tasks["air_bench_chat_local"]["metrics"]["score"]["value"] == pytest.approx(7.5)


# ---- video benchmarks --------------------------------------------------------------------------


def video_metadata(folder: Path) -> str:
    return f"metadata:\n  num_frames: 4\n  video_dir: {folder}\n"


def test_egoschema_on_its_published_schema(lmms_project: pytest.Pytester) -> None:
    media = lmms_project.path / "ego"
    rows: dict[str, list[Any]] = {
        k: [] for k in ("question_idx", "question", "video_idx", "option", "answer")
    }
    for number in range(3):
        video = f"0b4cacb1-{number}"
        write_video(media / "videos" / f"{video}.mp4", seconds=1.0, size=16, fps=4)
        rows["question_idx"].append(f"q-{number}")
        rows["question"].append("What is the person doing?")
        rows["video_idx"].append(video)
        rows["option"].append([f"{letter}. option {letter}" for letter in "ABCDE"])
        rows["answer"].append(str(number))  # the option index as a digit string
    features = {
        **strings("question_idx", "question", "video_idx", "answer"),
        "option": datasets.Sequence(STRING),
    }
    copy = save(lmms_project, "ego_copy", {"test": (rows, features)})
    local_yaml(lmms_project, "egoschema/egoschema.yaml", "egoschema_subset", copy, video_metadata(media))
    tasks = run(lmms_project, "--model=random:0", "--model-args=fallback=A.")
    assert_every_declared_row(tasks, "egoschema/egoschema.yaml", "egoschema_subset", 3)
    assert tasks["egoschema_subset_local"]["metrics"]["accuracy"]["value"] == pytest.approx(1 / 3)


def test_longvideobench_on_its_published_schema(lmms_project: pytest.Pytester) -> None:
    media = lmms_project.path / "lvb"
    features = {
        **strings("video_id", "id", "video_path", "subtitle_path", "question"),
        **strings(*(f"option{n}" for n in range(5)), "question_category", "topic_category"),
        "correct_choice": datasets.Value("int64"),
        "duration": datasets.Value("float64"),
        "duration_group": datasets.Value("int64"),
        "starting_timestamp_for_subtitles": datasets.Value("float64"),
    }
    rows: dict[str, list[Any]] = {k: [] for k in features}
    for number, group in enumerate((15, 60, 600, 3600)):
        write_video(media / "videos" / f"v{number}.mp4", seconds=1.0, size=16, fps=4)
        values = {
            "video_id": f"v{number}",
            "id": f"v{number}_0",
            "video_path": f"v{number}.mp4",
            "subtitle_path": f"v{number}_en.json",
            "question": "What happens first?",
            **{f"option{n}": f"event {n}" if n < 4 else "N/A" for n in range(5)},  # four options
            "question_category": "T3E",
            "topic_category": "NP-News-Programs",
            "correct_choice": number,
            "duration": float(group) - 1.0,
            "duration_group": group,
            "starting_timestamp_for_subtitles": 0.0,
        }
        for key, value in values.items():
            rows[key].append(value)
    copy = save(lmms_project, "lvb_copy", {"validation": (rows, features)})
    local_yaml(
        lmms_project,
        "longvideobench/longvideobench.yaml",
        "longvideobench_val_v",
        copy,
        video_metadata(media),
    )
    tasks = run(lmms_project, "--model=random:0", "--model-args=fallback=(A)")
    assert_every_declared_row(tasks, "longvideobench/longvideobench.yaml", "longvideobench_val_v", 4)
    assert tasks["longvideobench_val_v_local"]["metrics"]["duration_15"]["value"] == 1.0  # correct_choice 0


VIDEOMME_TASK_TYPES = (
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


def test_videomme_on_its_published_schema(lmms_project: pytest.Pytester) -> None:
    media = lmms_project.path / "vmme"
    columns = ("video_id", "duration", "domain", "sub_category", "url", "videoID", "question_id")
    columns += ("task_type", "question", "answer")
    features = {**strings(*columns), "options": datasets.Sequence(STRING)}
    rows: dict[str, list[Any]] = {k: [] for k in features}
    for number, task_type in enumerate(VIDEOMME_TASK_TYPES):
        video, duration = number // 3, ("short", "medium", "long")[number // 3 % 3]
        youtube_id = f"fFjv93ACGo{video}"
        if number % 3 == 0:  # three questions per video
            write_video(media / "data" / f"{youtube_id}.mp4", seconds=1.0, size=16, fps=4)
        values = {
            "video_id": f"{video + 1:03d}",
            "duration": duration,
            "domain": "Knowledge",
            "sub_category": "Humanity & History",
            "url": f"https://www.youtube.com/watch?v={youtube_id}",
            "videoID": youtube_id,
            "question_id": f"{video + 1:03d}-{number % 3 + 1}",
            "task_type": task_type,
            "question": "What is shown?",
            "answer": "A",
            "options": ["A. a cat.", "B. a dog.", "C. a bird.", "D. a fish."],
        }
        for key, value in values.items():
            rows[key].append(value)
    write_srt(
        media / "subtitle" / "fFjv93ACGo0.srt", [(0.0, 1.0, '<font color="white" size=".72c">Hello</font>')]
    )
    copy = save(lmms_project, "vmme_copy", {"test": (rows, features)})
    for task in ("videomme", "videomme_w_subtitle"):
        local_yaml(lmms_project, "videomme/videomme.yaml", task, copy, video_metadata(media))
    tasks = run(lmms_project, "--model=random:0", "--model-args=fallback=A")
    for task in ("videomme", "videomme_w_subtitle"):
        assert_every_declared_row(tasks, "videomme/videomme.yaml", task, 12)
        assert tasks[f"{task}_local"]["metrics"]["accuracy"]["value"] == 1.0
    with_subtitles = prompt(lmms_project, "videomme_w_subtitle", "001-1")
    assert with_subtitles.startswith("This video's subtitles are listed below: \nHello\n")


@pytest.mark.parametrize(
    ("task", "config"),
    [
        ("video_mmmu_perception", "Perception"),
        ("video_mmmu_comprehension", "Comprehension"),
        ("video_mmmu_adaptation", "Adaptation"),
    ],
)
def test_videommmu_on_its_published_schema(lmms_project: pytest.Pytester, task: str, config: str) -> None:
    media = lmms_project.path / "vmmmu"
    features = {**strings("id", "question", "answer", "question_type"), "options": datasets.Sequence(STRING)}
    rows: dict[str, list[Any]] = {k: [] for k in features}
    examples = [
        ("test_Art_Theory_1", "Art", ["A. red", "B. blue"], "A", "multiple-choice"),  # prefixed options
        ("test_Computer_Science_2", "Engineering", ["red", "blue"], "A", "multiple-choice"),
        ("test_Math_3", "Science", [], "A", "open"),
    ]
    for question_id, folder, options, answer, question_type in examples:
        write_video(media / folder / f"{question_id}.mp4", seconds=1.0, size=16, fps=4)
        values = {"id": question_id, "question": "<image 1> Which?", "answer": answer}
        values |= {"question_type": question_type, "options": options}
        for key, value in values.items():
            rows[key].append(value)
    # one config per track, each with its one split "test"; save_to_disk of load_dataset(ID, config)
    copy = save(lmms_project, f"{config}_copy", {"test": (rows, features)})
    local_yaml(lmms_project, "videommmu/videommmu.yaml", task, copy, video_metadata(media))
    tasks = run(lmms_project, "--model=random:0", "--model-args=fallback=A")
    assert_every_declared_row(tasks, "videommmu/videommmu.yaml", task, 3)
