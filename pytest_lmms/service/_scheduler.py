"""Runs jobs: each one a pytest-lmms session in its own process, on its own GPUs.

A job asks for ``gpus: k``; the pool is ``--gpus``. Jobs start in order (priority, then
FIFO) on disjoint GPU sets; the head of the queue is never overtaken by a smaller job,
so a big job cannot starve. Each session is an argument list (never a shell) with
``CUDA_VISIBLE_DEVICES`` set, its run folder and log named by the server, and the shared
response cache, so its results are exactly the command line's.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pytest_lmms._process import log_tail, stop_process_group
from pytest_lmms.service._store import Job, JobStore

# seconds a cancelled session gets to write what it has before it is killed
TERMINATE_GRACE_S = 10.0


@dataclass
class SchedulerConfig:
    tasks_dirs: Sequence[Path]
    gpus: Sequence[int] = ()
    # sessions that need no GPU (gpus: 0) running at once
    cpu_slots: int = 1
    extra_env: dict[str, str] = field(default_factory=dict)


def session_config(job: Job) -> dict[str, Any]:
    """The --lmms-config document of a job: only run settings, from the validated request."""
    spec = job.spec
    out: dict[str, Any] = {"model": spec["model"], "tasks": list(spec["tasks"])}
    for key in ("model_args", "gen_kwargs"):
        if spec.get(key):
            out[key] = {k: str(v) for k, v in spec[key].items()}
    for key in ("limit", "seed", "repeats"):
        if spec.get(key) is not None:
            out[key] = spec[key]
    return out


def session_command(store: JobStore, job: Job, tasks_dirs: Sequence[Path]) -> list[str]:
    """The job's pytest argument list; output folder, run name and cache set by the server."""
    config_path = store.run_dir(job.id).with_suffix(".yaml")
    config_path.write_text(yaml.safe_dump(session_config(job), sort_keys=True))
    return [
        sys.executable,
        "-m",
        "pytest",
        *[str(p) for p in tasks_dirs],
        "-p",
        "no:cacheprovider",
        f"--lmms-config={config_path}",
        f"--lmms-output={store.runs_dir}",
        f"--lmms-run-name={job.id}",
        f"--lmms-cache={store.cache_dir}",
        "--lmms-progress=lines",
    ]


class Scheduler:
    """Starts runnable jobs when their GPUs are free and records how each one ended."""

    def __init__(self, store: JobStore, config: SchedulerConfig) -> None:
        self.store = store
        self.config = config
        self._lock = threading.Condition()
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._busy: dict[str, tuple[int, ...]] = {}
        self._cancelled: set[str] = set()
        self._stopping = False
        self._thread: threading.Thread | None = None

    # ---- life cycle --------------------------------------------------------------------
    def start(self) -> None:
        for job in self.store.interrupt_running():
            _kill_orphan(job, self.store.run_dir(job.id))
        self._thread = threading.Thread(target=self._loop, name="lmms-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Server shutdown: running sessions are stopped and stay ``running`` in the store,
        so the next start re-queues them as interrupted."""
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
            processes = list(self._processes.values())
        for process in processes:
            _terminate(process)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def wake(self) -> None:
        with self._lock:
            self._lock.notify_all()

    # ---- cancel ------------------------------------------------------------------------
    def cancel(self, job_id: str) -> bool:
        """Stop a job: a queued one never starts, a running one's process group is terminated.
        What the session cached stays in the shared cache. False if it had finished."""
        if self.store.cancel_queued(job_id):
            return True
        with self._lock:
            process = self._processes.get(job_id)
            if process is None:
                return False
            self._cancelled.add(job_id)
        _terminate(process)
        return True

    # ---- the loop ----------------------------------------------------------------------
    def _free_gpus(self) -> list[int]:
        used = {gpu for gpus in self._busy.values() for gpu in gpus}
        return [gpu for gpu in self.config.gpus if gpu not in used]

    def _cpu_jobs(self) -> int:
        return sum(1 for gpus in self._busy.values() if not gpus)

    def _loop(self) -> None:
        while True:
            with self._lock:
                if self._stopping:
                    return
                self._start_what_fits()
                self._lock.wait(timeout=1.0)

    def _start_what_fits(self) -> None:
        for job in self.store.runnable():
            if job.id in self._processes:
                continue
            if job.gpus_requested > len(self.config.gpus):
                self.store.mark_finished(
                    job.id,
                    "failed",
                    error=f"asks for {job.gpus_requested} GPUs; the server has {len(self.config.gpus)}",
                )
                continue
            free = self._free_gpus()
            if job.gpus_requested == 0 and self._cpu_jobs() >= self.config.cpu_slots:
                return
            if job.gpus_requested > len(free):
                return  # strict order: the head waits for its GPUs, nobody overtakes it
            self._launch(job, tuple(free[: job.gpus_requested]))

    def _launch(self, job: Job, gpus: tuple[int, ...]) -> None:
        env = dict(os.environ)
        env.update(self.config.extra_env)
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, gpus))
        command = session_command(self.store, job, self.config.tasks_dirs)
        log = open(self.store.log_path(job.id), "ab")  # noqa: SIM115 - the child owns it
        try:
            log.write(f"== attempt {job.attempts + 1} on GPUs [{env['CUDA_VISIBLE_DEVICES']}]\n".encode())
            log.flush()
            process = subprocess.Popen(
                command,
                cwd=self.store.run_dir(job.id).parent,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: cancel stops every child
            )
        finally:
            log.close()
        if not self.store.mark_started(job.id, gpus, process.pid):
            _terminate(process)  # cancelled between listing and starting
            return
        self._processes[job.id] = process
        self._busy[job.id] = gpus
        threading.Thread(target=self._watch, args=(job.id, process), daemon=True).start()

    def _watch(self, job_id: str, process: subprocess.Popen[bytes]) -> None:
        code = process.wait()
        with self._lock:
            stopping = self._stopping
            cancelled = job_id in self._cancelled
        # recorded before its GPUs are freed: a job never starts on GPUs whose last job
        # still shows as running
        if not stopping:
            self._record_end(job_id, code, cancelled)
        with self._lock:
            self._cancelled.discard(job_id)
            self._processes.pop(job_id, None)
            self._busy.pop(job_id, None)
            self._lock.notify_all()

    def _record_end(self, job_id: str, code: int, cancelled: bool) -> None:
        if cancelled:
            self.store.mark_finished(job_id, "cancelled", exit_code=code)
            return
        results = read_job_results(self.store.run_dir(job_id))
        # exit 1 is a finished session with failed samples or a gate: its results stand
        if results is not None and code in (0, 1):
            self.store.mark_finished(job_id, "done", exit_code=code, results=results)
        else:
            self.store.mark_finished(
                job_id, "failed", exit_code=code, error=_last_lines(self.store.log_path(job_id))
            )


def read_job_results(run_dir: Path) -> dict[str, Any] | None:
    """The run's results document, checked by the schema reader, as JSON data."""
    from pytest_lmms.report import ResultsSchemaError, encode, read_results

    if not (run_dir / "results.json").is_file():
        return None
    try:
        return dict(encode(read_results(run_dir)))
    except (OSError, ResultsSchemaError, ValueError):
        return None


def _last_lines(path: Path, count: int = 20) -> str:
    text = log_tail(path, count)
    return "no log" if text is None else text


def _terminate(process: subprocess.Popen[bytes]) -> None:
    stop_process_group(process, TERMINATE_GRACE_S)


def _kill_orphan(job: Job, run_dir: Path) -> None:
    """A session the dead server left behind (its own session, so it outlived the server):
    stopped before the job is started again, so two sessions never share a run folder."""
    if job.pid is None:
        return
    try:
        cmdline = Path(f"/proc/{job.pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return
    if f"--lmms-run-name={job.id}" not in cmdline:
        return  # the pid was reused by another process
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(job.pid, signal.SIGKILL)
