"""``pytest-lmms watch DIR``: submit each new checkpoint folder to the service once.

Idempotent across restarts of the watcher: each submit carries the checkpoint's key (its
real path plus a fingerprint of its files), and the server returns the job it made
before for a key it has seen. A folder is submitted only once its fingerprint held still
for ``settle`` seconds, so a checkpoint being written is not evaluated half-done.
No Slurm, no shared file system lock: the server's store is the only state.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pytest_lmms.client import EvalClient
from pytest_lmms.service._trainer import checkpoint_fingerprint, checkpoint_key


def _checkpoints(folder: Path, pattern: str) -> list[Path]:
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and fnmatch.fnmatchcase(p.name, pattern)]
    return sorted(found, key=lambda p: (len(p.name), p.name))  # checkpoint-10 after checkpoint-9


def watch(
    folder: Path,
    client: EvalClient,
    tasks: Sequence[str],
    backend: str = "hf",
    pattern: str = "checkpoint-*",
    interval: float = 10.0,
    settle: float = 5.0,
    once: bool = False,
    log: Callable[[str], None] = print,
    **job_options: Any,
) -> int:
    """Scan ``folder`` every ``interval`` seconds; returns the number of jobs submitted."""
    seen: dict[Path, tuple[str, float]] = {}  # folder -> (fingerprint, first seen with it)
    done: set[tuple[Path, str]] = set()
    submitted = 0
    while True:
        now = time.monotonic()
        waiting = False
        for checkpoint in _checkpoints(folder, pattern):
            fingerprint = checkpoint_fingerprint(checkpoint)
            if (checkpoint, fingerprint) in done or not fingerprint:
                continue
            previous = seen.get(checkpoint)
            if previous is None or previous[0] != fingerprint:
                seen[checkpoint] = (fingerprint, now)
                previous = seen[checkpoint]
            if now - previous[1] < settle:
                waiting = True
                continue
            step = checkpoint.name.rpartition("-")[2]
            tags = [f"step-{step}"] if step.isdigit() else []
            job = client.submit(
                f"{backend}:{checkpoint.resolve()}",
                list(tasks),
                idempotency_key=checkpoint_key(checkpoint),
                tags=tags + list(job_options.get("tags", [])),
                **{k: v for k, v in job_options.items() if k != "tags"},
            )
            done.add((checkpoint, fingerprint))
            submitted += 1
            log(f"{checkpoint}: job {job['id']} ({job['state']})")
        if once and not waiting:
            return submitted
        time.sleep(min(interval, settle) if once else interval)
