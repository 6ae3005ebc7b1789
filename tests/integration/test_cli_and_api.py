"""`pytest-lmms tasks|models` and `pytest_lmms.evaluate()`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import pytest_lmms
from pytest_lmms.cli import main

ROOT = Path(__file__).resolve().parents[2]
OFFLINE = ROOT / "benchmarks" / "offline"


def test_tasks_lists_tasks_groups_sizes_and_paths(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tasks", str(OFFLINE)]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[2:]}
    assert rows["shapes_count"][1:3] == ["offline", "80"] and rows["shapes_count"][3].endswith("shapes.yaml")
    assert rows["shapes_color"][2] == "40" and rows["motion"][2] == "36"


def test_tasks_reports_a_broken_file_and_still_lists_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "good.yaml").write_text("task: good\ndataset_path: d.jsonl\ndoc_to_text: q\n")
    (tmp_path / "d.jsonl").write_text('{"id": 1}\n{"id": 2}\n')
    (tmp_path / "bad.yaml").write_text("task: bad\ndataset_path: d.jsonl\ndoc_to_txt: q\n")
    assert main(["tasks", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "good" in captured.out and "bad.yaml" in captured.err and "doc_to_txt" in captured.err


def test_models_lists_backends_through_the_console_script() -> None:
    script = Path(sys.executable).with_name("pytest-lmms")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "pytest_lmms.cli"]
    out = subprocess.run([*command, "models"], capture_output=True, text=True, check=True).stdout
    for backend in ("hf", "random", "openai", "anthropic", "vllm", "sglang"):
        assert f"\n{backend} " in out


def test_evaluate_runs_in_process_and_returns_the_results(tmp_path: Path) -> None:
    kwargs = {"paths": [OFFLINE], "cache": tmp_path / "cache", "output": tmp_path / "out"}
    first = pytest_lmms.evaluate(model="random:0", tasks=["shapes_*"], limit=5, **kwargs)
    assert first["exit_code"] == 0
    assert {task: info["n"] for task, info in first["tasks"].items()} == {
        "shapes_color": 5,
        "shapes_count": 5,
    }
    metric = first["tasks"]["shapes_color"]["metrics"]["choice_accuracy"]
    assert metric["ci_low"] <= metric["value"] <= metric["ci_high"]
    second = pytest_lmms.evaluate(model="random:0", tasks=["shapes_*"], limit=5, **kwargs)
    assert second["throughput"]["cached"] == 10
    with pytest.raises(ValueError, match="unknown model backend 'nosuch'"):
        pytest_lmms.evaluate(model="nosuch:x", tasks=["shapes_color"], limit=1, **kwargs)
    with pytest.raises(RuntimeError, match="exit code 4"):
        pytest_lmms.evaluate(model="random:0", tasks=["no_such_task"], limit=1, **kwargs)
