"""Run folders a person can read: each sample line holds what the model saw and what the
scorer read out of the answer."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_sample_lines_hold_the_prompt_media_choices_and_extracted_answer(pytester: pytest.Pytester) -> None:
    shutil.copytree(ROOT / "benchmarks" / "offline", pytester.path / "offline")
    result = pytester.runpytest(
        "offline/motion.yaml",
        "--model=random:0",
        "--limit=3",
        "--lmms-run-name=r",
        "-p",
        "no:cacheprovider",
        # no decode-ahead: the in-process frame cache is module state a later in-process
        # session would see (a known leak, the typed-core issue's)
        "--lmms-decode-threads=0",
    )
    assert result.ret == 0
    lines = (pytester.path / "results" / "r" / "samples_motion.jsonl").read_text().splitlines()
    records = {record["doc_id"]: record for record in map(json.loads, lines)}
    record = records["motion00-direction"]
    prompt = record["prompt"]
    assert "direction" in prompt["text"].lower()
    assert prompt["choices"] == ["down", "left", "right", "up"]
    (video,) = prompt["media"]
    video_file = pytester.path / "offline" / "videos" / "motion00.mp4"
    assert video["kind"] == "video" and Path(video["path"]).resolve() == video_file.resolve()
    assert video["sha256"] == hashlib.sha256(video_file.read_bytes()).hexdigest()
    assert video["sampling"]["num_frames"] == 4
    # the random baseline answers a letter: the scorer's reading of it is recorded
    assert record["extracted"] in {"A", "B", "C", "D"}
    assert record["response"].strip().strip("().").upper() == record["extracted"]
    assert record["scores"]["choice_accuracy"] == float(record["extracted"] == "A")


def test_a_scorer_that_reads_nothing_records_null(lmms_project: pytest.Pytester) -> None:
    from tests.helpers import qa_task_yaml, write_jsonl

    rows = [
        {"id": "0", "question": "q0", "answer": "12", "reply": "it is 12 apples"},
        {"id": "1", "question": "q1", "answer": "3", "reply": "no idea"},
    ]
    write_jsonl(lmms_project.path / "qa.jsonl", rows)
    lmms_project.makefile(".yaml", qa=qa_task_yaml("qa", "qa.jsonl").replace("exact_match", "number_match"))
    lmms_project.runpytest("--model=scripted:m1", "--lmms-run-name=r")
    samples = (lmms_project.path / "results/r/samples_qa.jsonl").read_text().splitlines()
    records = {r["doc_id"]: r for r in map(json.loads, samples)}
    assert {doc: r["extracted"] for doc, r in records.items()} == {"0": 12.0, "1": None}
    assert records["0"]["prompt"] == {
        "text": "Question q0: reply it is 12 apples",
        "media": [],
        "choices": None,
    }
