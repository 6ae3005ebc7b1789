"""Training-loop integration: a transformers ``TrainerCallback`` that submits each saved
checkpoint to the evaluation service and logs the finished results back into the
trainer's logs, keyed by the step that saved the checkpoint.

transformers is imported only when the callback is built, so the service needs none of it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_lmms.client import EvalClient, ServiceError


def checkpoint_fingerprint(folder: Path) -> str:
    """A cheap fingerprint of a checkpoint folder: each file's relative path, size and
    modification time. A rewritten checkpoint gets a new one; the same files, the same."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(folder)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def checkpoint_key(folder: Path) -> str:
    """The idempotency key of a checkpoint: its real path plus its fingerprint, so a
    restarted trainer or watcher never submits the same checkpoint twice."""
    real = os.path.realpath(folder)
    return "ckpt-" + hashlib.sha256(real.encode()).hexdigest()[:24] + ":" + checkpoint_fingerprint(Path(real))


def scores_of(results: Mapping[str, Any], prefix: str = "lmms") -> dict[str, float]:
    """``{prefix}/{task}/{metric}`` -> value (and ``..._ci_low`` / ``..._ci_high``) for logs."""
    out: dict[str, float] = {}
    for task, info in (results.get("tasks") or {}).items():
        for metric, block in (info.get("metrics") or {}).items():
            if block.get("value") is None:
                continue
            out[f"{prefix}/{task}/{metric}"] = float(block["value"])
            for bound in ("ci_low", "ci_high"):
                if block.get(bound) is not None:
                    out[f"{prefix}/{task}/{metric}_{bound}"] = float(block[bound])
    return out


def EvalCallback(  # noqa: N802 - a class to its users; built lazily so transformers is optional
    server: str,
    tasks: Sequence[str],
    backend: str = "hf",
    token: str | None = None,
    wait_at_end: float = 0.0,
    **job_options: Any,
) -> Any:
    """A ``TrainerCallback``: ``Trainer(..., callbacks=[EvalCallback(url, ["mme"])])``.

    Each save submits ``{backend}:{checkpoint folder}`` with the step as a tag; each log
    event adds the results that have finished since (``lmms/{task}/{metric}`` with its
    interval, and ``lmms/step``, the checkpoint's step) to the logs the trainer writes.
    ``wait_at_end`` seconds are spent at the end of training waiting for the last jobs.
    """
    from transformers import TrainerCallback

    client = EvalClient(server, token=token)
    extra_tags = list(job_options.pop("tags", []))

    class _EvalCallback(TrainerCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.pending: dict[str, int] = {}  # job id -> step
            self.finished: dict[int, dict[str, float]] = {}  # step -> scores logged

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if not state.is_world_process_zero:
                return
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if not folder.is_dir():
                return
            tags = [f"step-{state.global_step}", *extra_tags]
            job = client.submit(
                f"{backend}:{folder.resolve()}",
                list(tasks),
                idempotency_key=checkpoint_key(folder),
                tags=tags,
                **job_options,
            )
            self.pending[job["id"]] = state.global_step

        def collect(self) -> list[dict[str, float]]:
            """Scores of the jobs that finished since the last call (failed ones are dropped)."""
            out = []
            for job_id, step in list(self.pending.items()):
                try:
                    job = client.get(job_id)
                except ServiceError:
                    continue  # the server is away for a moment: try at the next log
                if job["state"] not in ("done", "failed", "cancelled"):
                    continue
                del self.pending[job_id]
                if job["state"] == "done" and job.get("results"):
                    scores = {"lmms/step": float(step), **scores_of(job["results"])}
                    self.finished[step] = scores
                    out.append(scores)
            return out

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            if logs is None:
                return
            for scores in self.collect():
                logs.update(scores)

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            import time

            deadline = time.monotonic() + wait_at_end
            while True:
                for scores in self.collect():
                    state.log_history.append({**scores, "step": int(scores["lmms/step"])})
                if not self.pending or time.monotonic() >= deadline:
                    return
                time.sleep(0.5)

    return _EvalCallback()
