"""The response cache: every model call of a run goes through it.

What it guarantees:

* Stable keys. ``cache_key`` is a sha256 over canonical JSON (sorted keys) of the cache schema
  version, the backend identity minus its transport fields (URLs, keys, concurrency,
  timeouts, retries, ...) and ``Request.canonical()`` (messages with media content hashes,
  generation parameters, repeat index). A key is the same in every process, on every machine
  and under every ``PYTHONHASHSEED``. The task name and doc id are not part of it, so one
  prompt asked by two tasks shares its response.
* Only reproducible answers are stored: deterministic requests (temperature 0) whose
  response has a non-empty text.
* A killed process loses nothing it handed to ``put_many``: the entries are appended to the
  instance's own write-ahead log (JSON lines, fsynced once per call) before they are written
  to SQLite, and the next ``ResponseCache`` opened on the directory replays every log whose
  owner is gone (a torn last line is skipped with a warning).
* Several processes (xdist workers, concurrent runs) can share one directory: SQLite runs in
  WAL mode with a busy timeout, and statements retry briefly when the database is locked. One
  instance can be used from several threads.
* A corrupt entry is a warning and a miss, never a wrong answer; the next put overwrites it.

What it does not guarantee: after ``close`` an entry's durability is SQLite's with
``synchronous=NORMAL`` (always consistent, but the last commits can roll back after a power
loss or an OS crash, not after a process crash).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import secrets
import sqlite3
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar

import orjson

from pytest_lmms.types import Request, Response

__all__ = [
    "CACHE_SCHEMA_VERSION",
    "TRANSPORT_FIELDS",
    "CacheError",
    "CacheWarning",
    "ResponseCache",
    "cache_key",
    "is_cacheable",
]

CACHE_SCHEMA_VERSION: int = 1

# Backend arguments that cannot change an output: where and how a request travels, who pays
# for it, how fast it goes, and where the model is placed. Backends should already leave them
# out of their identity; dropping them here as well keeps a forgotten one from invalidating
# the cache (and a secret from being hashed next to a prompt).
TRANSPORT_FIELDS: frozenset[str] = frozenset(
    {
        # where the request goes
        "base_url",
        "url",
        "api_base",
        "endpoint",
        "host",
        "port",
        "proxy",
        "headers",
        "extra_headers",
        # credentials
        "api_key",
        "key",
        "token",
        "secret",
        "password",
        "organization",
        # throughput
        "max_concurrency",
        "concurrency",
        "num_concurrent",
        "num_workers",
        "batch_size",
        "max_batch_size",
        "rate_limit",
        "requests_per_minute",
        # reliability
        "timeout",
        "request_timeout",
        "retries",
        "max_retries",
        "retry_backoff",
        # placement (a cache must not depend on the GPU count or rank)
        "device",
        "device_map",
        "num_gpus",
        "tensor_parallel_size",
        "data_parallel_size",
        "pipeline_parallel_size",
        "gpu_memory_utilization",
        # local bookkeeping
        "cache_dir",
        "verbose",
        "log_level",
    }
)

DB_FILENAME = "responses.sqlite"
WAL_DIRNAME = "wal"
GET_CHUNK_SIZE = 500  # well under SQLite's bound-parameter limit (999 before 3.32)
BUSY_TIMEOUT_S = 30.0
LOCKED_ATTEMPTS = 5
LOCKED_BACKOFF_S = 0.05

_SCHEMA = "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL)"
_UPSERT = "INSERT OR REPLACE INTO responses (key, value) VALUES (?, ?)"
# A replayed entry never replaces a row: the row is either the same entry or a newer answer
# to the same deterministic request.
_INSERT_IF_ABSENT = "INSERT OR IGNORE INTO responses (key, value) VALUES (?, ?)"

_T = TypeVar("_T")
Row = tuple[str, bytes]


class CacheError(RuntimeError):
    """The cache directory or database cannot be used, or a value cannot be stored."""


class CacheWarning(UserWarning):
    """A cache entry or a write-ahead log line was unreadable and has been skipped."""


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return value.as_posix()
    if isinstance(value, (set, frozenset)):
        # Set order depends on PYTHONHASHSEED; sorting keeps keys stable across processes.
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _canonical_json(data: Any) -> bytes:
    return orjson.dumps(
        data,
        default=_json_default,
        option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY,
    )


def cache_key(identity: Mapping[str, Any], request: Request) -> str:
    """The sha256 hex key of ``request`` sent to the backend described by ``identity``."""
    backend = {name: value for name, value in identity.items() if name not in TRANSPORT_FIELDS}
    payload = {"v": CACHE_SCHEMA_VERSION, "backend": backend, "request": request.canonical()}
    return hashlib.sha256(_canonical_json(payload)).hexdigest()


def is_cacheable(request: Request, response: Response) -> bool:
    """Whether ``response`` may be stored: a non-empty text for a deterministic request, or
    for a sampled one with a seed (stored under its repeat index and seed, marked
    ``sampled``, so an interrupted run resumes its repeats; never claimed reproducible).
    A loglikelihood answer has no text: its log-probability is what is stored."""
    reusable = request.gen.deterministic or request.gen.seed is not None
    if request.kind == "loglikelihood":
        return reusable and response.logprob is not None
    return reusable and isinstance(response.text, str) and response.text != ""


def _encode_value(request: Request, response: Response, created: float) -> bytes:
    record = response.to_json()
    record.update(
        task=request.task,
        doc_id=request.doc_id,
        repeat=request.repeat,
        sampled=not request.gen.deterministic,
        created=created,
    )
    try:
        return orjson.dumps(record, default=_json_default, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError as exc:
        raise CacheError(f"response to {request.task}/{request.doc_id} cannot be cached: {exc}") from exc


def _log_line(key: str, value: bytes) -> bytes:
    # The value is already JSON; splicing it in avoids serializing the response twice.
    return b'{"key":' + orjson.dumps(key) + b',"value":' + value + b"}\n"


def _read_log(log_path: Path, data: bytes) -> Iterator[Row]:
    for line_number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            entry = orjson.loads(line)
            key, record = entry["key"], entry["value"]
            if not (isinstance(key, str) and isinstance(record, dict)):
                raise ValueError("not a cache entry")
            if not isinstance(record.get("text"), str):
                raise ValueError("entry has no text")
        except (KeyError, TypeError, ValueError) as exc:  # JSONDecodeError is a ValueError
            warnings.warn(
                f"response cache write-ahead log {log_path}:{line_number} is unreadable "
                f"({exc}); line skipped",
                CacheWarning,
                stacklevel=5,
            )
            continue
        yield key, orjson.dumps(record)


def _is_locked(exc: sqlite3.OperationalError) -> bool:
    message = str(exc).lower()
    return "locked" in message or "busy" in message


def _retry_when_locked(operation: Callable[[], _T]) -> _T:
    # The busy timeout covers most contention, but WAL mode reports some conflicts (such as a
    # concurrent switch of journal mode) at once, without calling the busy handler.
    for attempt in range(LOCKED_ATTEMPTS):
        try:
            return operation()
        except sqlite3.OperationalError as exc:
            if attempt == LOCKED_ATTEMPTS - 1 or not _is_locked(exc):
                raise
            time.sleep(LOCKED_BACKOFF_S * 2**attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def _is_same_file(handle: IO[bytes], path: Path) -> bool:
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(handle.fileno())
    return (on_disk.st_dev, on_disk.st_ino) == (opened.st_dev, opened.st_ino)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ResponseCache:
    """Responses by cache key, in ``directory/responses.sqlite``.

    Each instance appends what it stores to its own write-ahead log,
    ``directory/wal/<pid>-<random>.jsonl``, held under an exclusive ``flock`` for the
    instance's lifetime; a log nobody holds belongs to a dead process and is replayed.
    """

    def __init__(self, directory: str | Path) -> None:
        self.path = Path(directory)
        self.db_path = self.path / DB_FILENAME
        self.hits = 0
        self.misses = 0
        self.writes = 0
        self._closed = False
        # Lock order: _log_lock before _db_lock. Readers take only _db_lock, so a put's fsync
        # never blocks a get from another thread.
        self._log_lock = threading.Lock()
        self._db_lock = threading.Lock()
        # False once a SQLite write failed: the log then holds entries SQLite lacks, and
        # close keeps it for the next instance to replay.
        self._log_in_sqlite = True

        log_dir = self.path / WAL_DIRNAME
        try:
            log_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._unusable(exc) from exc
        self._conn = self._connect()
        try:
            self._replay_orphaned_logs(log_dir)
            self._log_path, self._log_file = self._create_own_log(log_dir)
        except BaseException as exc:
            self._conn.close()
            if isinstance(exc, (OSError, sqlite3.Error)):
                raise self._unusable(exc) from exc
            raise

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"ResponseCache({str(self.path)!r}, {state})"

    # -- reading -------------------------------------------------------------------------

    def get_many(self, keys: Sequence[str]) -> dict[str, Response]:
        """The cached responses among ``keys`` (marked ``cached=True``); misses are absent."""
        unique = list(dict.fromkeys(keys))
        found: dict[str, Response] = {}
        for start in range(0, len(unique), GET_CHUNK_SIZE):
            for key, value in self._select(unique[start : start + GET_CHUNK_SIZE]):
                response = self._decode(key, value)
                if response is not None:
                    found[key] = response
        with self._db_lock:
            self.hits += len(found)
            self.misses += len(unique) - len(found)
        return found

    def get(self, key: str) -> Response | None:
        return self.get_many([key]).get(key)

    # -- writing -------------------------------------------------------------------------

    def put_many(self, entries: Sequence[tuple[str, Request, Response]]) -> int:
        """Store the cacheable entries; return how many were stored.

        The entries reach the write-ahead log (one fsync per call) before SQLite, so a
        process killed at any point loses none of them.
        """
        created = time.time()
        rows = [
            (key, _encode_value(request, response, created))
            for key, request, response in entries
            if is_cacheable(request, response)
        ]
        if not rows:
            return 0
        log = b"".join(_log_line(key, value) for key, value in rows)
        with self._log_lock:
            self._check_open()
            self._log_file.write(log)
            self._log_file.flush()
            os.fsync(self._log_file.fileno())
            try:
                self._write_sqlite(rows)
            except BaseException:
                self._log_in_sqlite = False
                raise
        with self._db_lock:
            self.writes += len(rows)
        return len(rows)

    def _write_sqlite(self, rows: list[Row]) -> None:
        """Store logged rows in one transaction (a seam: tests replace it to crash here)."""
        self._transaction(_UPSERT, rows)

    def merge_from(self, other: str | Path, batch_size: int = 5000) -> int:
        """Add every entry of the cache folder ``other`` (a shard's cache) that this cache
        lacks; returns how many were added. ``other`` replays its own orphaned logs first."""
        source = ResponseCache(other)
        added = 0
        try:
            with source._db_lock:
                source._check_open()
                rows = source._conn.execute("SELECT key, value FROM responses").fetchall()
            for start in range(0, len(rows), batch_size):
                chunk = [(key, value) for key, value in rows[start : start + batch_size]]
                before = self._count()
                self._transaction(_INSERT_IF_ABSENT, chunk)
                added += self._count() - before
        finally:
            source.close()
        return added

    def _count(self) -> int:
        with self._db_lock:
            self._check_open()
            return int(self._conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    # -- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        """Commit, then delete this instance's write-ahead log (SQLite holds it all)."""
        with self._log_lock, self._db_lock:
            if self._closed:
                return
            self._closed = True
            try:
                if self._conn.in_transaction:
                    self._conn.commit()
                self._conn.close()
            except BaseException:
                self._log_in_sqlite = False
                raise
            finally:
                if self._log_in_sqlite:
                    self._log_path.unlink(missing_ok=True)
                self._log_file.close()  # releases the flock

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals -----------------------------------------------------------------------

    def _unusable(self, exc: BaseException) -> CacheError:
        target = self.db_path if isinstance(exc, sqlite3.Error) else self.path
        return CacheError(f"response cache {target} is not usable: {exc}")

    def _check_open(self) -> None:
        if self._closed:
            raise CacheError(f"response cache {self.path} is closed")

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.db_path,
                timeout=BUSY_TIMEOUT_S,
                isolation_level=None,  # transactions are explicit (BEGIN IMMEDIATE)
                check_same_thread=False,  # guarded by _db_lock
            )
        except sqlite3.Error as exc:
            raise self._unusable(exc) from exc
        try:
            _retry_when_locked(lambda: self._configure(conn))
        except BaseException as exc:
            conn.close()
            if isinstance(exc, sqlite3.Error):
                raise self._unusable(exc) from exc
            raise
        return conn

    def _configure(self, conn: sqlite3.Connection) -> None:
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
        if str(mode).lower() != "wal":
            raise CacheError(
                f"response cache {self.db_path} is not usable: SQLite cannot use WAL journal "
                f"mode there (got {mode!r}); put the cache on a local filesystem"
            )
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute(_SCHEMA)

    def _select(self, keys: list[str]) -> list[tuple[str, Any]]:
        sql = f"SELECT key, value FROM responses WHERE key IN ({','.join('?' * len(keys))})"

        def query() -> list[tuple[str, Any]]:
            with self._db_lock:
                self._check_open()
                return self._conn.execute(sql, keys).fetchall()

        return _retry_when_locked(query)

    def _transaction(self, sql: str, rows: list[Row]) -> None:
        def run() -> None:
            with self._db_lock:
                self._check_open()
                conn = self._conn
                # IMMEDIATE takes the write lock up front, so a reader turning writer cannot
                # fail half-way with SQLITE_BUSY.
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.executemany(sql, rows)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise

        _retry_when_locked(run)

    def _decode(self, key: str, value: Any) -> Response | None:
        try:
            record = orjson.loads(value)
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
            return Response.from_json(record, cached=True)
        except (TypeError, ValueError) as exc:  # JSONDecodeError is a ValueError
            warnings.warn(
                f"response cache {self.db_path}: entry {key} is corrupt ({exc}); treated as a miss",
                CacheWarning,
                stacklevel=3,
            )
            return None

    def _replay_orphaned_logs(self, log_dir: Path) -> None:
        for log_path in sorted(log_dir.glob("*.jsonl")):
            self._replay_if_orphaned(log_path)

    def _replay_if_orphaned(self, log_path: Path) -> None:
        try:
            handle = open(log_path, "rb")  # noqa: SIM115 - closed below, after the unlink
        except FileNotFoundError:
            return  # another process replayed it meanwhile
        with handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # its owner is alive
            # Another replayer may have removed it between our open and our lock.
            if not _is_same_file(handle, log_path):
                return
            rows = list(_read_log(log_path, handle.read()))
            if rows:
                self._transaction(_INSERT_IF_ABSENT, rows)
            log_path.unlink()

    def _create_own_log(self, log_dir: Path) -> tuple[Path, IO[bytes]]:
        name = f"{os.getpid()}-{secrets.token_hex(8)}"
        # Created under a name replayers ignore and published only once locked, so no one
        # mistakes it for an orphan in between.
        pending = log_dir / f".{name}.pending"
        final = log_dir / f"{name}.jsonl"
        fd = os.open(pending, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        handle = os.fdopen(fd, "ab")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(pending, final)
            _fsync_directory(log_dir)
        except BaseException:
            handle.close()
            pending.unlink(missing_ok=True)
            raise
        return final, handle
