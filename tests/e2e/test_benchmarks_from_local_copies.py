"""Each hub benchmark from a local `datasets` copy (save_to_disk) with its real feature types
(Image, Audio, nested metadata), through a real pytest session: the YAML as shipped, only
`dataset_path` pointed at the folder. The model is `random:0`: the point is that loading,
rendering (media hashed for the cache key), scoring and aggregation run end to end."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from pytest_lmms.media import wav_bytes

datasets = pytest.importorskip("datasets")
# imported here, once: an in-process pytester run cannot import torch a second time
with contextlib.suppress(Exception):  # without it the audio case skips
    import torchcodec.decoders  # noqa: F401

ROOT = Path(__file__).resolve().parents[2] / "benchmarks"


def png(color: tuple[int, int, int]) -> dict[str, Any]:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buffer, format="PNG")
    return {"bytes": buffer.getvalue(), "path": None}


def wav(seconds: float, rate: int = 16000) -> dict[str, Any]:
    samples = 0.1 * np.sin(np.linspace(0, 440 * 2 * np.pi * seconds, int(rate * seconds)))
    return {"bytes": wav_bytes(samples.astype(np.float32), rate), "path": None}


def mme() -> tuple[dict[str, list[Any]], Any]:
    rows: dict[str, list[Any]] = {
        "question_id": [],
        "image": [],
        "question": [],
        "answer": [],
        "category": [],
    }
    for image in range(2):
        for answer in ("Yes", "No"):
            rows["question_id"].append(f"color/{image}.png")
            rows["image"].append(png((200, 0, 0)))
            rows["question"].append("Is the image red? Please answer yes or no.")
            rows["answer"].append(answer)
            rows["category"].append("color")
    features = datasets.Features(
        {
            "question_id": datasets.Value("string"),
            "image": datasets.Image(),
            "question": datasets.Value("string"),
            "answer": datasets.Value("string"),
            "category": datasets.Value("string"),
        }
    )
    return rows, features


def mmbench() -> tuple[dict[str, list[Any]], Any]:
    rows: dict[str, list[Any]] = {
        k: []
        for k in (
            "index",
            "question",
            "hint",
            "A",
            "B",
            "C",
            "D",
            "answer",
            "category",
            "l2-category",
            "image",
        )
    }
    for index, answer, d in (
        (3, "A", "dog"),
        (1_000_003, "B", "dog"),
        (4, "C", None),
        (1_000_004, "A", None),
    ):
        rows["index"].append(index)
        rows["question"].append("Which animal is shown?")
        rows["hint"].append(None if index % 2 else "Look closely.")
        rows["A"].append("cat")
        rows["B"].append("bird")
        rows["C"].append("fish")
        rows["D"].append(d)
        rows["answer"].append(answer)
        rows["category"].append("ocr")
        rows["l2-category"].append("coarse_perception")
        rows["image"].append(png((0, 0, 200)))
    strings = {k: datasets.Value("string") for k in rows if k not in ("index", "image")}
    features = datasets.Features({**strings, "index": datasets.Value("int64"), "image": datasets.Image()})
    return rows, features


def mmmu() -> tuple[dict[str, list[Any]], Any]:
    columns = ["id", "question", "options", "explanation", "img_type", "answer", "topic_difficulty"]
    columns += ["question_type", "subfield"]
    rows: dict[str, list[Any]] = {k: [] for k in columns}
    for n in range(1, 8):
        rows[f"image_{n}"] = []
    examples = [
        ("validation_Art_Theory_1", "Compare <image 1> and <image 2>.", "['old', 'new']", "A", 2),
        ("validation_Math_2", "<image 1> What is 2+2?", "[]", "4", 1),
    ]
    for question_id, question, options, answer, images in examples:
        for key, value in zip(
            columns,
            [question_id, question, options, "", "['Diagrams']", answer, "Easy", "", ""],
            strict=True,
        ):
            rows[key].append(value)
        rows["question_type"][-1] = "multiple-choice" if options != "[]" else "open"
        for n in range(1, 8):
            rows[f"image_{n}"].append(png((10 * n, 0, 0)) if n <= images else None)
    features = datasets.Features(
        {
            **{k: datasets.Value("string") for k in columns},
            **{f"image_{n}": datasets.Image() for n in range(1, 8)},
        }
    )
    return rows, features


def mathvista() -> tuple[dict[str, list[Any]], Any]:
    meta = {
        "split": "testmini",
        "language": "english",
        "img_width": 8,
        "img_height": 8,
        "source": "fixture",
        "category": "math-targeted-vqa",
        "task": "figure question answering",
        "context": "bar chart",
        "grade": "not applicable",
        "skills": ["arithmetic reasoning"],
    }
    rows = {
        "pid": ["1", "2"],
        "question": ["How many bars?", "Which is larger?"],
        "image": ["images/1.jpg", "images/2.jpg"],
        "decoded_image": [png((0, 100, 0)), png((0, 0, 100))],
        "choices": [None, ["left", "right"]],
        "unit": [None, None],
        "precision": [None, None],
        "answer": ["3", "left"],
        "question_type": ["free_form", "multi_choice"],
        "answer_type": ["integer", "text"],
        "metadata": [meta, meta],
        "query": ["Question: How many bars?", "Question: Which is larger?\nChoices:\n(A) left\n(B) right"],
    }
    features = datasets.Features(
        {
            **{
                k: datasets.Value("string")
                for k in rows
                if k not in ("decoded_image", "choices", "precision", "metadata")
            },
            "decoded_image": datasets.Image(),
            "choices": datasets.Sequence(datasets.Value("string")),
            "precision": datasets.Value("float64"),
            "metadata": {
                **{
                    k: datasets.Value("string")
                    for k in meta
                    if k not in ("img_width", "img_height", "skills")
                },
                "img_width": datasets.Value("int64"),
                "img_height": datasets.Value("int64"),
                "skills": datasets.Sequence(datasets.Value("string")),
            },
        }
    )
    return rows, features


def librispeech() -> tuple[dict[str, list[Any]], Any]:
    rows = {
        "audio": [wav(0.2), wav(0.3)],
        "prompt": ["", ""],
        "gt": ["HELLO WORLD", "GOOD MORNING"],
        "source": ["librispeech_test_clean"] * 2,
        "task": ["asr_en"] * 2,
    }
    features = datasets.Features(
        {
            "audio": datasets.Audio(sampling_rate=16000),
            **{k: datasets.Value("string") for k in rows if k != "audio"},
        }
    )
    return rows, features


CASES = {
    "mme": ("mme/mme.yaml", mme, 4),
    "mmbench_en_dev": ("mmbench/mmbench.yaml", mmbench, 4),
    "mmmu_val": ("mmmu/mmmu_val.yaml", mmmu, 2),
    "mathvista_testmini": ("mathvista/mathvista_testmini.yaml", mathvista, 2),
    "librispeech_test_clean": ("librispeech/librispeech.yaml::librispeech_test_clean", librispeech, 2),
}


@pytest.mark.parametrize("task", sorted(CASES))
def test_benchmark_runs_from_a_local_save_to_disk_copy(lmms_project: pytest.Pytester, task: str) -> None:
    if task.startswith("librispeech"):
        pytest.importorskip("torchcodec.decoders", reason="datasets decodes Audio columns with torchcodec")
    yaml, build, n = CASES[task]
    rows, features = build()
    split = "librispeech_test_clean" if task.startswith("librispeech") else None
    dataset = datasets.Dataset.from_dict(rows, features=features, split=split)
    dataset.save_to_disk(str(lmms_project.path / "copy"))
    lmms_project.makefile(".yaml", local=f"include: {ROOT / yaml}\ntask: {task}_local\ndataset_path: copy\n")
    result = lmms_project.runpytest("--model=random:0", "--lmms-output=results", "--lmms-run-name=r")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0 and outcomes.get("errors", 0) == 0, result.stdout.str()[-3000:]
    data = json.loads((lmms_project.path / "results" / "r" / "results.json").read_text())
    info = data["tasks"][f"{task}_local"]
    assert info["n"] == n and info["failed"] == 0
    assert info["metrics"], info
