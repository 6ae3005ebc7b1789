"""`pytest_lmms.evaluate()`: an in-process session that returns the results dict."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import pytest_lmms

ROOT = Path(__file__).resolve().parents[2]
OFFLINE = ROOT / "benchmarks" / "offline"


def run(tmp_path: Path, **kwargs: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "model": "random:0",
        "tasks": ["offline"],
        "limit": 5,
        "paths": [OFFLINE],
        "cache": tmp_path / "c",
        "output": tmp_path / "o",
    }
    options.update(kwargs)
    return pytest_lmms.evaluate(**options)


def run_dirs(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "o").glob("*/")) if (tmp_path / "o").exists() else []


def test_evaluate_returns_results_for_every_task_of_the_group(tmp_path: Path) -> None:
    result = run(tmp_path)
    assert result["exit_code"] == 0  # wrong answers of a chance-level model still pass
    assert {"shapes_count", "shapes_color"} <= set(result["tasks"])
    # the offline group also holds the video task; each task gets its first five documents
    assert set(result["tasks"]) == {"shapes_count", "shapes_color", "motion"}
    for task, info in result["tasks"].items():
        assert info["n"] == 5 and info["failed"] == 0, task
        assert info["metrics"], task
        for metric, estimate in info["metrics"].items():
            assert {"value", "ci_low", "ci_high", "n"} <= set(estimate), metric
            assert estimate["n"] == 5
            assert estimate["ci_low"] <= estimate["value"] <= estimate["ci_high"]
            assert 0.0 <= estimate["value"] <= 1.0
        samples = Path(info["samples_file"]).read_text().splitlines()
        assert len(samples) == 5
    assert result["model"]["spec"] == "random:0"
    assert result["config"]["limit"] == 5 and result["config"]["tasks"] == ["offline"]
    assert result["throughput"]["samples"] == 15 and result["throughput"]["cached"] == 0
    # the same dict, minus the exit code, is what results.json holds
    on_disk = json.loads(Path(result["results_file"]).read_text())
    assert on_disk == {k: v for k, v in result.items() if k != "exit_code"}


def test_evaluate_twice_in_one_process_answers_the_second_from_the_cache(tmp_path: Path) -> None:
    first = run(tmp_path, tasks=["shapes_*"])
    second = run(tmp_path, tasks=["shapes_*"])
    assert first["exit_code"] == second["exit_code"] == 0
    assert set(second["tasks"]) == {"shapes_count", "shapes_color"}
    assert first["throughput"]["model_calls"] == 10 and first["throughput"]["cached"] == 0
    assert second["throughput"]["cached"] == 10 and second["throughput"]["model_calls"] == 0
    for task in ("shapes_count", "shapes_color"):
        assert second["tasks"][task]["metrics"] == first["tasks"][task]["metrics"]


def test_two_evaluate_calls_in_the_same_second_get_their_own_run_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the two sessions see one start time, as two quick calls often do
    monkeypatch.setattr("pytest_lmms._session.time", SimpleNamespace(time=lambda: 1_700_000_000.0))
    first = run(tmp_path, tasks=["shapes_color"], limit=3)
    second = run(tmp_path, tasks=["shapes_color"], limit=3)
    samples = Path(second["tasks"]["shapes_color"]["samples_file"]).read_text().splitlines()
    assert len(samples) == second["tasks"]["shapes_color"]["n"] == 3
    assert first["results_file"] != second["results_file"]


def test_evaluate_without_a_cache_calls_the_model_every_time(tmp_path: Path) -> None:
    for _ in range(2):
        result = run(tmp_path, tasks=["shapes_color"], limit=3, cache=False)
        assert result["throughput"]["model_calls"] == 3 and result["throughput"]["cached"] == 0
    assert not (tmp_path / "c").exists()


def test_evaluate_passes_extra_options_as_lmms_flags(tmp_path: Path) -> None:
    result = run(tmp_path, tasks=["shapes_color"], limit=2, seed=7, run_name="named")
    assert result["config"]["seed"] == 7 and result["config"]["run_name"] == "named"
    assert Path(result["results_file"]) == tmp_path / "o" / "named" / "results.json"


def test_unknown_backend_is_a_value_error_naming_it_before_any_session(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown backend 'nosuch'.*known: .*random"):
        run(tmp_path, model="nosuch:x")
    with pytest.raises(ValueError, match=r"BACKEND:MODEL_ID.*'random'"):
        run(tmp_path, model="random")
    assert run_dirs(tmp_path) == []  # nothing ran, nothing was written
    assert not (tmp_path / "c").exists()


def test_unknown_task_is_a_runtime_error_with_the_usage_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(RuntimeError, match=r"no results \(pytest exit code 4\)"):
        run(tmp_path, tasks=["shapes_colour"])
    assert "no task or group matches 'shapes_colour'" in capsys.readouterr().err
    assert run_dirs(tmp_path) == []


def test_evaluate_maps_judge_and_baseline_keywords_and_restores_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    monkeypatch.delenv("PYTEST_LMMS_RUN_DIR", raising=False)
    result = run(tmp_path, tasks=["shapes_color"], limit=2, judge_model="random:1", baseline_model="random:2")
    assert result["config"]["judge_model"] == "random:1"
    assert result["config"]["baseline_model"] == "random:2"
    assert result["comparison"]["baseline_model"] == "random:2"
    assert "PYTEST_LMMS_RUN_DIR" not in os.environ


def test_readme_snippet_runs_from_an_empty_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No path given: the catalog that comes with pytest-lmms is found from any folder."""
    monkeypatch.chdir(tmp_path)
    result = pytest_lmms.evaluate(model="random:0", tasks=["offline"], limit=20)
    assert result["exit_code"] == 0
    assert set(result["tasks"]) == {"shapes_count", "shapes_color", "motion"}
    assert all(info["n"] == 20 and info["metrics"] for info in result["tasks"].values())
    assert Path(result["results_file"]).resolve().is_relative_to(tmp_path.resolve() / "results")


def test_tasks_command_lists_the_catalog_from_an_empty_folder(tmp_path: Path) -> None:
    import subprocess
    import sys

    listing = subprocess.run(
        [sys.executable, "-m", "pytest_lmms.cli", "tasks"], cwd=tmp_path, capture_output=True, text=True
    )
    assert listing.returncode == 0, listing.stderr
    rows = {line.split()[0]: line.split() for line in listing.stdout.splitlines()[2:]}
    assert rows["mmbench_en_dev"][2:4] == ["lmms-lab/MMBench", "(en)"]
    assert rows["shapes_count"][1:5] == ["offline", "shapes_count.jsonl", "test", "80"]


def test_a_second_evaluate_in_the_process_sees_nothing_of_the_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from pytest_lmms.media import FRAME_CACHE
    from pytest_lmms.types import _FILE_HASHES

    monkeypatch.delenv("LMMS_TEST_FROM_CONFIG", raising=False)
    config = tmp_path / "run.yaml"
    config.write_text("environment:\n  LMMS_TEST_FROM_CONFIG: first\n")
    decodes = FRAME_CACHE.decodes
    first = run(tmp_path, tasks=["motion"], limit=6, cache=False, config=str(config))
    assert first["tasks"]["motion"]["n"] == 6
    assert FRAME_CACHE.decodes > decodes  # decode-ahead decoded the videos during the run
    # the first session's environment, decoded frames and file-hash memo are gone
    assert "LMMS_TEST_FROM_CONFIG" not in os.environ
    assert len(FRAME_CACHE) == 0 and not _FILE_HASHES
    second = run(tmp_path, tasks=["motion"], limit=6, cache=False, seed=7)
    assert second["config"]["seed"] == 7 and second["config"]["config_file"] is None
    assert second["tasks"]["motion"]["n"] == 6
