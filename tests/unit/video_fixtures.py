"""Real tiny media for the video benchmark tests: H.264 MP4 files written with PyAV, SRT files,
and loading a benchmark YAML's task with its dataset pointed at fixture rows."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pytest_lmms.tasks import Task, TaskSpec, load_specs


def write_video(path: Path, seconds: float = 2.0, size: int = 32, fps: int = 8) -> Path:
    """A ``seconds`` long ``size`` x ``size`` video at ``fps``; frame i is a flat grey of level
    8 * i, so a decoded frame tells which one it was."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast"}
        for index in range(round(seconds * fps)):
            image = np.full((size, size, 3), (8 * index) % 256, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def srt_time(seconds: float) -> str:
    millis = round(seconds * 1000)
    return (
        f"{millis // 3_600_000:02d}:{millis // 60_000 % 60:02d}:{millis // 1000 % 60:02d},{millis % 1000:03d}"
    )


def write_srt(path: Path, blocks: Iterable[tuple[float, float, str]]) -> Path:
    """An SRT file of (start s, end s, text) blocks, numbered from 1."""
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = [
        f"{number}\n{srt_time(start)} --> {srt_time(end)}\n{text}\n"
        for number, (start, end, text) in enumerate(blocks, 1)
    ]
    path.write_text("\n".join(entries), encoding="utf-8")
    return path


def write_rows(path: Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    return path


def task_on_rows(yaml_path: Path, name: str, rows_path: Path) -> Task:
    """Task ``name`` of a (possibly multi-task) benchmark YAML, reading ``rows_path`` instead of
    the hub: its functions still come from the benchmark's own folder."""
    spec = next(s for s in load_specs(yaml_path) if isinstance(s, TaskSpec) and s.name == name)
    return Task(dataclasses.replace(spec, dataset_path=str(rows_path), dataset_name=None))


def load_module(path: Path) -> Any:
    """A benchmark's utils.py imported on its own (for its helper functions)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"{path.parent.name}_utils_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
