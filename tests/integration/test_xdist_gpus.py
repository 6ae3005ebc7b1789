"""--lmms-gpus-per-worker: each xdist worker sees only its own slice of the GPUs."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_lmms.xdist import worker_devices
from tests.helpers import qa_rows, qa_task_yaml, write_jsonl


def test_worker_devices_slices_and_refuses_oversubscription() -> None:
    devices = ["0", "1", "2", "3", "4", "5"]
    assert [worker_devices(devices, i, 3, 2) for i in range(3)] == [["0", "1"], ["2", "3"], ["4", "5"]]
    with pytest.raises(ValueError, match=r"4 workers x 2 GPU\(s\) need 8 devices, but 6 are visible"):
        worker_devices(devices, 0, 4, 2)


def test_each_worker_is_pinned_before_its_model_starts(
    lmms_project: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_log = tmp_path / "env.log"
    monkeypatch.setenv("SCRIPTED_ENV_LOG", str(env_log))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    write_jsonl(lmms_project.path / "qa.jsonl", qa_rows(12))
    lmms_project.makefile(".yaml", qa=qa_task_yaml("qa", "qa.jsonl"))
    result = lmms_project.runpytest(
        "--model=scripted:m", "--no-lmms-cache", "-p", "xdist", "-n", "2", "--lmms-gpus-per-worker=2"
    )
    assert result.parseoutcomes()["passed"] == 12
    pinned = {line.split()[1] for line in env_log.read_text().splitlines()}
    assert pinned == {"4,5", "6,7"}


def test_too_few_gpus_is_a_usage_error(
    lmms_project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    write_jsonl(lmms_project.path / "qa.jsonl", qa_rows(4))
    lmms_project.makefile(".yaml", qa=qa_task_yaml("qa", "qa.jsonl"))
    result = lmms_project.runpytest(
        "--model=scripted:m", "-p", "xdist", "-n", "2", "--lmms-gpus-per-worker=2"
    )
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*2 workers x 2 GPU(s) need 4 devices, but 2 are visible*"])
