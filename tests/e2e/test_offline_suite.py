"""The embedded default: `pytest benchmarks/offline` with no model argument, end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Runs after the session: a fully cached run must not have imported torch.
NO_TORCH_PLUGIN = """
import sys
def pytest_sessionfinish(session):
    print("torch imported:", "torch" in sys.modules)
"""


@pytest.mark.usefixtures("lmms_home")
def test_offline_suite_runs_with_the_embedded_model_and_reruns_from_the_cache(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    (tmp_path / "probe.py").write_text(NO_TORCH_PLUGIN)
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    args = [
        sys.executable,
        "-m",
        "pytest",
        "benchmarks/offline",
        "-p",
        "no:cacheprovider",
        "-p",
        "probe",
        f"--lmms-cache={tmp_path / 'cache'}",
        f"--lmms-output={tmp_path / 'results'}",
    ]
    first = subprocess.run(
        [*args, "--lmms-run-name=first"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "pytest-lmms results" in first.stdout
    for task in ("shapes_count", "shapes_color", "motion"):
        assert any(line.startswith(task) and "[" in line for line in first.stdout.splitlines()), first.stdout[
            -2000:
        ]
    data = json.loads((tmp_path / "results" / "first" / "results.json").read_text())
    assert data["model"]["spec"] == "hf:tiny-qwen2-vl"
    assert {t: info["n"] for t, info in data["tasks"].items()} == {
        "motion": 36,
        "shapes_color": 40,
        "shapes_count": 80,
        "ppl_shapes_color": 40,  # multiple choice by likelihood
        "ppl_shapes_caption": 40,  # a caption's perplexity
    }
    for task, n in (("shapes_count", 80), ("shapes_color", 40)):
        lines = (tmp_path / "results" / "first" / f"samples_{task}.jsonl").read_text().splitlines()
        assert len(lines) == n
        estimate = data["tasks"][task]["metrics"][next(iter(data["tasks"][task]["metrics"]))]
        assert (
            estimate["ci_low"] is not None and estimate["ci_low"] <= estimate["value"] <= estimate["ci_high"]
        )
    assert data["tasks"]["shapes_count"]["metrics"]["number_match"]["method"] == "agresti-coull-cluster"
    # one request per generated sample, one per option of a likelihood sample (4 colours)
    assert data["throughput"]["model_calls"] == 156 + 40 * 4 + 40

    second = subprocess.run(
        [*args, "--lmms-run-name=second"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert second.returncode == 0
    again = json.loads((tmp_path / "results" / "second" / "results.json").read_text())
    assert again["throughput"]["cached"] == 236 and again["throughput"]["model_calls"] == 0
    assert "torch imported: False" in second.stdout
    for task in ("shapes_count", "shapes_color", "motion", "ppl_shapes_color", "ppl_shapes_caption"):
        assert again["tasks"][task]["metrics"] == data["tasks"][task]["metrics"]
