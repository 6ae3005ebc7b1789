"""Submission files: a saved run's answers in the format a benchmark's server expects."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson


def build_submission(run: str | Path, task_name: str, task_yaml: str | Path | None = None) -> Any:
    """The submission content of ``task_name`` from a saved run (its folder or results.json):
    the task's ``submission`` function applied to the run's samples of that task."""
    from pytest_lmms.report._compare import load_run
    from pytest_lmms.tasks import load_task

    saved = load_run(run)
    info = saved.results.tasks.get(task_name)
    if info is None:
        known = ", ".join(sorted(saved.results.tasks)) or "none"
        raise ValueError(f"{saved.path}: no task {task_name!r} in this run (tasks: {known})")
    samples = saved.samples.get(task_name)
    if not samples:
        raise ValueError(f"{saved.path}: task {task_name!r} has no answered samples")
    yaml = task_yaml or info.yaml
    if not yaml:
        raise ValueError(f"{saved.path}: the run does not record the YAML of {task_name!r}; pass it")
    task = load_task(f"{yaml}::{task_name}")
    return task.submission(samples)


def write_submission(content: Any, out: str | Path) -> Path:
    """Write ``content`` by the file's suffix: .json (any content), .jsonl / .csv / .xlsx
    (a list of row mappings; .xlsx needs openpyxl)."""
    out = Path(out)
    suffix = out.suffix.lower()
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".json":
        out.write_bytes(orjson.dumps(content, option=orjson.OPT_INDENT_2))
        return out
    rows = _rows(content, suffix)
    if suffix == ".jsonl":
        out.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    elif suffix == ".csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=_columns(rows))
        writer.writeheader()
        writer.writerows(rows)
        out.write_text(buffer.getvalue(), encoding="utf-8")
    elif suffix == ".xlsx":
        try:
            import pandas as pd
        except ImportError as exc:  # pragma: no cover - pandas comes with datasets
            raise ValueError(f"{out}: writing .xlsx needs pandas and openpyxl ({exc})") from None
        try:
            pd.DataFrame(rows, columns=_columns(rows)).to_excel(out, index=False)
        except ImportError as exc:
            raise ValueError(f"{out}: writing .xlsx needs openpyxl: pip install openpyxl ({exc})") from None
    else:
        raise ValueError(f"{out}: unknown submission format {suffix!r} (use .json, .jsonl, .csv or .xlsx)")
    return out


def _rows(content: Any, suffix: str) -> list[Mapping[str, Any]]:
    if isinstance(content, Mapping):
        content = [{"id": key, "answer": value} for key, value in content.items()]
    if not isinstance(content, Sequence) or not all(isinstance(row, Mapping) for row in content):
        raise ValueError(f"a {suffix} submission needs a list of rows; this task's submission is not one")
    return list(content)


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    return list(columns)
