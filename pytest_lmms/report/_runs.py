"""Saved runs: list the run folders under an output folder, pick the newest, show samples."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from pytest_lmms.report._records import RunResults
from pytest_lmms.report._schema import ResultsSchemaError, decode, read_results
from pytest_lmms.types import SampleResult

LATEST = "latest"


@dataclass(frozen=True)
class RunEntry:
    """One saved run, read from its results.json."""

    path: Path  # the run folder
    results: RunResults

    @property
    def created(self) -> str:
        return self.results.created

    @property
    def model(self) -> str:
        return self.results.model.spec or "?"

    @property
    def complete(self) -> bool | None:
        """Whether every planned sample was answered; None for runs that do not say."""
        completeness = self.results.completeness
        return None if completeness is None else completeness.complete

    def headline(self) -> dict[str, float | None]:
        """Each task's first metric value (None when the task has no metric)."""
        out: dict[str, float | None] = {}
        for task, info in self.results.tasks.items():
            first = next(iter(info.metrics.values()), None)
            out[task] = None if first is None else first.value
        return out


def list_runs(output_dir: str | Path) -> list[RunEntry]:
    """Every run folder under ``output_dir`` with a readable results.json, oldest first (by
    the time recorded in it, then the folder name); unreadable ones (and ones of a newer
    schema than this package reads) are skipped."""
    root = Path(output_dir)
    runs = []
    for results_file in sorted(root.glob("*/results.json")):
        try:
            runs.append(RunEntry(results_file.parent, read_results(results_file)))
        except ResultsSchemaError:
            continue
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


def sample_records(run_dir: str | Path, task: str | None = None) -> Iterator[SampleResult]:
    """The samples of a run (of one task), in file order; a ValueError naming the file and
    line of a record that does not fit the sample schema."""
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
                    record = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{number}: not a JSON line: {exc}") from None
                yield decode(SampleResult, record, f"{path}:{number}")
