"""Local copies of hub datasets: `pytest-lmms download` writes them, `--lmms-data` reads them.

A copy of one task's split lives at ``DIR/<dataset id with / as __>/<config>/<revision>/<split>``
(written by ``datasets.Dataset.save_to_disk``), beside a ``pytest-lmms.json`` saying what it
holds. The revision is part of the path, so a YAML pinned to another revision never reads a
copy of a different one: it fails and names the command that makes the right copy.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from pytest_lmms.tasks._spec import TaskSpec

DATA_VARIABLE = "PYTEST_LMMS_DATA"
META_FILE = "pytest-lmms.json"
UNPINNED = "unpinned"


def dataset_revision(spec: TaskSpec) -> str | None:
    """The revision a task's YAML pins (``dataset_kwargs: {revision: ...}``), if any."""
    revision = dict(spec.dataset_kwargs).get("revision")
    return str(revision) if revision else None


def local_copy_path(data_dir: str | Path, spec: TaskSpec) -> Path:
    """Where the copy of ``spec``'s split lives under ``data_dir``."""
    dataset = str(spec.dataset_path).strip("/").replace("/", "__")
    return (
        Path(data_dir)
        / dataset
        / (spec.dataset_name or "default")
        / (dataset_revision(spec) or UNPINNED)
        / spec.test_split
    )


def download_command(spec: TaskSpec) -> str:
    return f"pytest-lmms download {spec.name} --out DIR"


@dataclass(frozen=True)
class Downloaded:
    task: str
    path: Path
    rows: int
    seconds: float


def download(spec: TaskSpec, out_dir: str | Path, *, overwrite: bool = False) -> Downloaded:
    """Load ``spec``'s split from the hub (the same ``datasets`` call a run makes, at the
    pinned revision) and save it under ``out_dir``; written to a temporary folder renamed
    at the end, so an interrupted download leaves no half copy."""
    import datasets

    started = time.monotonic()
    target = local_copy_path(out_dir, spec)
    if target.exists() and not overwrite:
        rows = len(datasets.load_from_disk(str(target)))
        return Downloaded(spec.name, target, rows, time.monotonic() - started)
    loaded = datasets.load_dataset(
        spec.dataset_path, spec.dataset_name, split=spec.test_split, **dict(spec.dataset_kwargs)
    )
    if isinstance(loaded, datasets.DatasetDict):
        loaded = loaded[spec.test_split]
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    loaded.save_to_disk(str(partial))
    meta: dict[str, Any] = {
        "task": spec.name,
        "dataset_path": spec.dataset_path,
        "dataset_name": spec.dataset_name,
        "split": spec.test_split,
        "revision": dataset_revision(spec),
        "rows": len(loaded),
        "saved": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "datasets_version": datasets.__version__,
    }
    (partial / META_FILE).write_bytes(orjson.dumps(meta, option=orjson.OPT_INDENT_2))
    if target.exists():
        shutil.rmtree(target)
    partial.rename(target)
    return Downloaded(spec.name, target, len(loaded), time.monotonic() - started)


def data_dir_from_environment() -> Path | None:
    value = os.environ.get(DATA_VARIABLE)
    return Path(value) if value else None
