"""The offline motion task: three questions per video, each video decoded once."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_lmms.media import FRAME_CACHE
from tests.fake_openai import FakeOpenAI

ROOT = Path(__file__).resolve().parents[2]


def test_three_questions_per_video_decode_each_video_once(
    pytester: pytest.Pytester, openai_server: FakeOpenAI
) -> None:
    pytest.importorskip("av")
    before = FRAME_CACHE.decodes
    result = pytester.runpytest(
        str(ROOT / "benchmarks" / "offline" / "motion.yaml"),
        "--model=openai:tiny",
        f"--model-args=base_url={openai_server.url}",
        "--no-lmms-cache",
        f"--lmms-output={pytester.path / 'results'}",
    )
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0 and outcomes.get("passed", 0) + outcomes.get("wrong", 0) == 36
    assert FRAME_CACHE.decodes - before == 12
    first = openai_server.bodies[0]["messages"][0]["content"]
    assert [part["type"] for part in first] == ["image_url"] * 4 + ["text"]


def test_shipped_motion_documents_match_their_generator() -> None:
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("motion_gen", ROOT / "benchmarks" / "offline" / "motion.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    shipped = (ROOT / "benchmarks" / "offline" / "motion.jsonl").read_text().splitlines()
    assert shipped == [json.dumps(doc, sort_keys=True) for doc in module.documents()]
    for doc in module.documents():
        assert (ROOT / "benchmarks" / "offline" / doc["video"]).is_file()
