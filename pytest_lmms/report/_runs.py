"""Saved runs: list the run folders under an output folder, pick the newest, show samples."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

LATEST = "latest"


@dataclass(frozen=True)
class RunEntry:
    """One saved run, read from its results.json."""

    path: Path  # the run folder
    results: dict[str, Any]

    @property
    def created(self) -> str:
        return str(self.results.get("created") or "?")

    @property
    def model(self) -> str:
        return str((self.results.get("model") or {}).get("spec") or "?")

    @property
    def complete(self) -> bool | None:
        """Whether every planned sample was answered; None for runs that do not say."""
        completeness = self.results.get("completeness")
        if not isinstance(completeness, dict):
            return None
        return bool(completeness.get("complete"))

    def headline(self) -> dict[str, float | None]:
        """Each task's first metric value (None when the task has no metric)."""
        out: dict[str, float | None] = {}
        for task, info in (self.results.get("tasks") or {}).items():
            metrics = info.get("metrics") or {}
            first = next(iter(metrics.values()), None)
            out[task] = None if first is None else first.get("value")
        return out


def list_runs(output_dir: str | Path) -> list[RunEntry]:
    """Every run folder under ``output_dir`` with a readable results.json, oldest first (by
    the time recorded in it, then the folder name); unreadable ones are skipped."""
    root = Path(output_dir)
    runs = []
    for results_file in sorted(root.glob("*/results.json")):
        try:
            results = orjson.loads(results_file.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            continue
        if isinstance(results, dict) and "tasks" in results:
            runs.append(RunEntry(results_file.parent, results))
    return sorted(runs, key=lambda run: (run.created, run.path.name))


def find_latest(output_dir: str | Path, model: str | None = None) -> Path:
    """The newest run folder (of ``model``, a spec or an fnmatch pattern over specs); a
    ValueError naming the folder and what was looked for when there is none."""
    runs = list_runs(output_dir)
    if model is not None:
        runs = [run for run in runs if run.model == model or fnmatch.fnmatchcase(run.model, model)]
    if not runs:
        wanted = f" of model {model!r}" if model is not None else ""
        raise ValueError(f"no saved run{wanted} under {output_dir} (a folder holding */results.json)")
    return runs[-1].path


def resolve_run(spec: str | Path, output_dir: str | Path) -> Path:
    """A run given as a path, as ``latest`` or as ``latest:MODEL`` (newest run of MODEL)."""
    text = str(spec)
    if text == LATEST:
        return find_latest(output_dir)
    if text.startswith(LATEST + ":"):
        return find_latest(output_dir, text.removeprefix(LATEST + ":"))
    return Path(spec)


def sample_records(run_dir: str | Path, task: str | None = None) -> Iterator[dict[str, Any]]:
    """The sample lines of a run (of one task), as written, in file order."""
    folder = Path(run_dir)
    if folder.is_file():
        folder = folder.parent
    pattern = f"samples_{task}.jsonl" if task else "samples_*.jsonl"
    files = sorted(folder.glob(pattern))
    if task and not files:
        raise ValueError(f"{folder}: no samples of task {task!r} (no {pattern})")
    for path in files:
        with open(path, "rb") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    yield orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{number}: not a JSON line: {exc}") from None
