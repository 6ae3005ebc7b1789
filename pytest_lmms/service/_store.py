"""The durable job store: one SQLite database (WAL) under ``--store DIR``.

Jobs, their states, progress counts and their results live here, so a restarted server
keeps every queued and finished job. The folders a job writes (its log file and its run
folder) are named by the server from the job id, never by a request.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

JobState = Literal["queued", "running", "done", "failed", "cancelled", "interrupted"]
JOB_STATES: tuple[JobState, ...] = ("queued", "running", "done", "failed", "cancelled", "interrupted")
# states the scheduler may start: an interrupted job is re-queued in its original place
RUNNABLE: tuple[JobState, ...] = ("queued", "interrupted")
FINISHED: tuple[JobState, ...] = ("done", "failed", "cancelled")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    idempotency_key TEXT UNIQUE,
    state TEXT NOT NULL,
    spec TEXT NOT NULL,
    model TEXT NOT NULL,
    tags TEXT NOT NULL,
    gpus_requested INTEGER NOT NULL,
    priority INTEGER NOT NULL,
    gpus TEXT NOT NULL DEFAULT '[]',
    pid INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    exit_code INTEGER,
    error TEXT,
    results TEXT,
    created REAL NOT NULL,
    started REAL,
    finished REAL
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
"""


@dataclass(frozen=True)
class Job:
    """One job as the store holds it; ``spec`` is the validated request."""

    id: str
    state: JobState
    spec: Mapping[str, Any]
    model: str
    tags: tuple[str, ...]
    gpus_requested: int
    priority: int
    seq: int
    created: float
    idempotency_key: str | None = None
    gpus: tuple[int, ...] = ()
    pid: int | None = None
    attempts: int = 0
    exit_code: int | None = None
    error: str | None = None
    results: Mapping[str, Any] | None = field(default=None, repr=False)
    started: float | None = None
    finished: float | None = None


class JobStore:
    """Thread-safe access to the jobs database and the per-job folders."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        for folder in (self.root, self.logs_dir, self.runs_dir, self.cache_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.root / "jobs.sqlite3", check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)

    # ---- folders named by the server ---------------------------------------------------
    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def cache_dir(self) -> Path:
        """The response cache every job shares, so a resubmitted job repeats no model call."""
        return self.root / "cache"

    def log_path(self, job_id: str) -> Path:
        return self.logs_dir / f"{job_id}.log"

    def run_dir(self, job_id: str) -> Path:
        return self.runs_dir / job_id

    # ---- jobs ------------------------------------------------------------------------
    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def submit(self, spec: Mapping[str, Any], idempotency_key: str | None = None) -> tuple[Job, bool]:
        """The new job, or the job an earlier submit with the same key made (and False)."""
        with self._transaction() as db:
            if idempotency_key is not None:
                row = db.execute(
                    "SELECT * FROM jobs WHERE idempotency_key = ?", (idempotency_key,)
                ).fetchone()
                if row is not None:
                    return _job(row), False
            job_id = secrets.token_hex(16)
            db.execute(
                "INSERT INTO jobs (id, idempotency_key, state, spec, model, tags, gpus_requested, priority,"
                " created) VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    idempotency_key,
                    json.dumps(dict(spec), sort_keys=True),
                    str(spec["model"]),
                    json.dumps(list(spec.get("tags", []))),
                    int(spec.get("gpus", 0)),
                    int(spec.get("priority", 0)),
                    time.time(),
                ),
            )
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _job(row), True

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _job(row) if row is not None else None

    def list_jobs(
        self, state: str | None = None, model: str | None = None, tag: str | None = None
    ) -> list[Job]:
        query, params = "SELECT * FROM jobs WHERE 1=1", list[str]()
        if state is not None:
            query, params = query + " AND state = ?", [*params, state]
        if model is not None:
            query, params = query + " AND model = ?", [*params, model]
        with self._lock:
            rows = self._db.execute(query + " ORDER BY seq", params).fetchall()
        jobs = [_job(row) for row in rows]
        return [job for job in jobs if tag is None or tag in job.tags]

    def runnable(self) -> list[Job]:
        """Jobs waiting to start, in the order they start: priority first, then FIFO."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM jobs WHERE state IN ('queued', 'interrupted') ORDER BY priority DESC, seq"
            ).fetchall()
        return [_job(row) for row in rows]

    def mark_started(self, job_id: str, gpus: Sequence[int], pid: int) -> bool:
        """Running on ``gpus``; False when the job was cancelled meanwhile."""
        with self._transaction() as db:
            changed = db.execute(
                "UPDATE jobs SET state = 'running', gpus = ?, pid = ?, attempts = attempts + 1, started = ?"
                " WHERE id = ? AND state IN ('queued', 'interrupted')",
                (json.dumps(list(gpus)), pid, time.time(), job_id),
            ).rowcount
        return bool(changed)

    def mark_finished(
        self,
        job_id: str,
        state: JobState,
        exit_code: int | None = None,
        error: str | None = None,
        results: Mapping[str, Any] | None = None,
    ) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE jobs SET state = ?, exit_code = ?, error = ?, results = ?, finished = ?, pid = NULL"
                " WHERE id = ? AND state NOT IN ('done', 'failed', 'cancelled')",
                (
                    state,
                    exit_code,
                    error,
                    json.dumps(results) if results is not None else None,
                    time.time(),
                    job_id,
                ),
            )

    def cancel_queued(self, job_id: str) -> bool:
        """Cancel a job that has not started; False if it is running or finished."""
        with self._transaction() as db:
            changed = db.execute(
                "UPDATE jobs SET state = 'cancelled', finished = ? WHERE id = ? AND state IN"
                " ('queued', 'interrupted')",
                (time.time(), job_id),
            ).rowcount
        return bool(changed)

    def interrupt_running(self) -> list[Job]:
        """At start-up: the jobs a dead server left ``running`` become ``interrupted`` (and so
        are re-queued in their original place). Returns them as they were, with their pids."""
        with self._transaction() as db:
            rows = db.execute("SELECT * FROM jobs WHERE state = 'running'").fetchall()
            db.execute("UPDATE jobs SET state = 'interrupted', gpus = '[]' WHERE state = 'running'")
        return [_job(row) for row in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _job(row: sqlite3.Row) -> Job:
    return Job(
        id=row["id"],
        state=row["state"],
        spec=json.loads(row["spec"]),
        model=row["model"],
        tags=tuple(json.loads(row["tags"])),
        gpus_requested=row["gpus_requested"],
        priority=row["priority"],
        seq=row["seq"],
        created=row["created"],
        idempotency_key=row["idempotency_key"],
        gpus=tuple(json.loads(row["gpus"])),
        pid=row["pid"],
        attempts=row["attempts"],
        exit_code=row["exit_code"],
        error=row["error"],
        results=json.loads(row["results"]) if row["results"] else None,
        started=row["started"],
        finished=row["finished"],
    )
