"""Tests of the response cache on real SQLite files, including real crashes of real processes.

Child processes import this module (``from test_cache import make_entries``) so that parent
and child build exactly the same entries.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import warnings
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

from pytest_lmms.cache import (
    CACHE_SCHEMA_VERSION,
    TRANSPORT_FIELDS,
    CacheError,
    CacheWarning,
    ResponseCache,
    cache_key,
    is_cacheable,
)
from pytest_lmms.types import (
    GenParams,
    MediaPart,
    MediaRef,
    Message,
    Request,
    RequestKind,
    Response,
    TextPart,
)

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parents[1]
IDENTITY: dict[str, Any] = {"backend": "openai", "model": "gpt-test", "revision": "2025-01-01"}
GREEDY = GenParams()
IMAGE = b"\x89PNG\r\n\x1a\n not really an image"

Entry = tuple[str, Request, Response]


def make_request(
    text: str = "What is shown in the image?",
    *,
    image: bytes | None = IMAGE,
    task: str = "mmmu_val",
    doc_id: str = "7",
    gen: GenParams = GREEDY,
    repeat: int = 0,
    kind: RequestKind = "generate",
    choices: tuple[str, ...] = (),
) -> Request:
    content: tuple[TextPart | MediaPart, ...] = (TextPart(text),)
    if image is not None:
        content = (MediaPart(MediaRef("image", image)), *content)
    return Request(
        task=task,
        doc_id=doc_id,
        messages=(Message("user", content),),
        gen=gen,
        repeat=repeat,
        kind=kind,
        choices=choices,
    )


def make_entries(count: int, prefix: str = "doc") -> list[Entry]:
    entries = []
    for index in range(count):
        request = make_request(
            f"{prefix} question {index}", image=f"{prefix}-{index}".encode(), doc_id=str(index)
        )
        response = Response(
            text=f"{prefix} answer {index}",
            input_tokens=100 + index,
            output_tokens=3,
            latency_s=0.25,
            meta={"finish_reason": "stop"},
        )
        entries.append((cache_key(IDENTITY, request), request, response))
    return entries


def keys_of(entries: list[Entry]) -> list[str]:
    return [key for key, _, _ in entries]


def child_command(code: str, *args: str) -> list[str]:
    prelude = f"import sys\nsys.path.insert(0, {str(TESTS_DIR)!r})\n"
    return [sys.executable, "-c", prelude + textwrap.dedent(code), *args]


def run_child(code: str, *args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        child_command(code, *args),
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def kill_child(code: str, *args: str) -> None:
    """Run a child that is expected to die of SIGKILL."""
    result = subprocess.run(
        child_command(code, *args), cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == -signal.SIGKILL, result.stderr


@contextmanager
def raw_db(directory: Path) -> Iterator[sqlite3.Connection]:
    with closing(sqlite3.connect(directory / "responses.sqlite")) as conn:
        yield conn
        conn.commit()


def wal_logs(directory: Path) -> list[Path]:
    return sorted((directory / "wal").glob("*.jsonl"))


# -- keys --------------------------------------------------------------------------------------


def test_key_is_sha256_of_the_documented_canonical_json() -> None:
    request = make_request()
    payload = {"v": CACHE_SCHEMA_VERSION, "backend": IDENTITY, "request": request.canonical()}
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    expected = hashlib.sha256(canonical.encode()).hexdigest()
    assert cache_key({**IDENTITY, "api_key": "sk-secret"}, request) == expected


KEY_CHILD = """
    from pytest_lmms.cache import cache_key
    from test_cache import IDENTITY, make_request
    print(cache_key({**IDENTITY, "stop_ids": frozenset({"a", "b", "c", "d"})}, make_request()))
"""


@pytest.mark.parametrize("hash_seed", ["0", "4242"])
def test_key_is_stable_across_processes_and_hash_seeds(hash_seed: str) -> None:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    in_child = run_child(KEY_CHILD, env=env).strip()
    identity = {**IDENTITY, "stop_ids": frozenset({"d", "c", "b", "a"})}
    assert in_child == cache_key(identity, make_request())


def test_key_ignores_identity_key_order() -> None:
    reordered = dict(reversed(list(IDENTITY.items())))
    assert cache_key(reordered, make_request()) == cache_key(IDENTITY, make_request())


@pytest.mark.parametrize(
    ("identity", "request_"),
    [
        pytest.param(IDENTITY, make_request("What is shown here?"), id="prompt-text"),
        pytest.param(IDENTITY, make_request(image=IMAGE + b"!"), id="media-bytes"),
        pytest.param(IDENTITY, make_request(image=None), id="media-dropped"),
        pytest.param(IDENTITY, make_request(gen=GenParams(max_new_tokens=128)), id="max-tokens"),
        pytest.param(IDENTITY, make_request(gen=GenParams(temperature=0.7)), id="temperature"),
        pytest.param(IDENTITY, make_request(gen=GenParams(top_p=0.9)), id="top-p"),
        pytest.param(IDENTITY, make_request(gen=GenParams(stop=("\n",))), id="stop"),
        pytest.param(IDENTITY, make_request(gen=GenParams(seed=1)), id="seed"),
        pytest.param(IDENTITY, make_request(repeat=1), id="repeat"),
        pytest.param(IDENTITY, make_request(kind="loglikelihood"), id="kind"),
        pytest.param(IDENTITY, make_request(choices=("A", "B")), id="choices"),
        pytest.param({**IDENTITY, "model": "gpt-other"}, make_request(), id="model"),
        pytest.param({**IDENTITY, "revision": "2025-02-01"}, make_request(), id="revision"),
        pytest.param({**IDENTITY, "max_pixels": 1024}, make_request(), id="backend-argument"),
    ],
)
def test_key_changes_with_what_changes_the_output(identity: dict[str, Any], request_: Request) -> None:
    assert cache_key(identity, request_) != cache_key(IDENTITY, make_request())


@pytest.mark.parametrize(
    ("identity", "request_"),
    [
        pytest.param({**IDENTITY, "base_url": "http://gpu-7:8000/v1"}, make_request(), id="url"),
        pytest.param({**IDENTITY, "api_key": "sk-other"}, make_request(), id="api-key"),
        pytest.param({**IDENTITY, "max_concurrency": 64}, make_request(), id="concurrency"),
        pytest.param({**IDENTITY, "timeout": 5, "max_retries": 9}, make_request(), id="retries"),
        pytest.param(IDENTITY, make_request(task="mmmu_pro"), id="task"),
        pytest.param(IDENTITY, make_request(doc_id="99"), id="doc-id"),
    ],
)
def test_key_ignores_transport_and_sample_identity(identity: dict[str, Any], request_: Request) -> None:
    assert cache_key(identity, request_) == cache_key(IDENTITY, make_request())


def test_key_depends_on_media_content_not_on_its_source(tmp_path: Path) -> None:
    image_file = tmp_path / "image.png"
    image_file.write_bytes(IMAGE)
    from_file = Request(
        task="mmmu_val",
        doc_id="7",
        messages=(
            Message(
                "user",
                (MediaPart(MediaRef("image", image_file)), TextPart("What is shown in the image?")),
            ),
        ),
    )
    assert cache_key(IDENTITY, from_file) == cache_key(IDENTITY, make_request())


def test_a_file_is_hashed_without_holding_its_bytes_and_rehashed_when_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib
    import os

    video = tmp_path / "long.mp4"
    video.write_bytes(b"\x01" * 100_000)
    first = MediaRef("video", video)
    assert first.content_hash == hashlib.sha256(b"\x01" * 100_000).hexdigest()
    assert first._bytes is None  # hashing did not load the file into the reference
    opened: list[str] = []
    real_open = open

    def counting_open(file, *args, **kwargs):  # type: ignore[no-untyped-def]
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", counting_open)
    assert MediaRef("video", video).content_hash == first.content_hash  # another question, same file
    assert opened == []
    video.write_bytes(b"\x02" * 100_001)
    os.utime(video, ns=(1, 1))
    assert MediaRef("video", video).content_hash == hashlib.sha256(b"\x02" * 100_001).hexdigest()
    assert opened == [str(video)]
    with pytest.raises(FileNotFoundError, match="gone.mp4"):
        MediaRef("video", tmp_path / "gone.mp4").content_hash  # noqa: B018


def test_transport_fields_cover_the_documented_names() -> None:
    documented = {"base_url", "url", "api_key", "key", "token", "max_concurrency", "concurrency"}
    documented |= {"timeout", "retries", "max_retries", "num_workers"}
    assert documented <= TRANSPORT_FIELDS


# -- what is stored ----------------------------------------------------------------------------


def test_only_deterministic_or_seeded_non_empty_responses_are_cacheable() -> None:
    answer = Response(text="B")
    assert is_cacheable(make_request(), answer)
    assert not is_cacheable(make_request(gen=GenParams(temperature=0.7)), answer)
    assert is_cacheable(make_request(gen=GenParams(temperature=0.7, seed=3)), answer)
    assert not is_cacheable(make_request(), Response(text=""))


def test_round_trip_across_instances(tmp_path: Path) -> None:
    entries = make_entries(3)
    with ResponseCache(tmp_path) as cache:
        assert cache.path == tmp_path
        assert cache.put_many(entries) == 3
        assert cache.writes == 3
        first = cache.get(entries[0][0])
        assert first == dataclasses.replace(entries[0][2], cached=True)
    with ResponseCache(tmp_path) as cache:
        found = cache.get_many(keys_of(entries))
        assert cache.hits == 3
        assert cache.misses == 0
    assert found == {key: dataclasses.replace(resp, cached=True) for key, _, resp in entries}


def test_stored_value_is_a_json_blob_with_inspection_fields(tmp_path: Path) -> None:
    [entry] = make_entries(1)
    with ResponseCache(tmp_path) as cache:
        cache.put_many([entry])
    with raw_db(tmp_path) as conn:
        value, value_type = conn.execute(
            "SELECT value, typeof(value) FROM responses WHERE key = ?", (entry[0],)
        ).fetchone()
    record = orjson.loads(value)
    assert value_type == "blob"
    assert record["text"] == entry[2].text
    assert (record["task"], record["doc_id"], record["sampled"]) == ("mmmu_val", "0", False)
    assert isinstance(record["created"], float)


@pytest.mark.parametrize(
    ("request_", "response"),
    [
        pytest.param(make_request(gen=GenParams(temperature=0.7)), Response("B"), id="sampled-unseeded"),
        pytest.param(make_request(), Response(""), id="empty-text"),
    ],
)
def test_uncacheable_responses_are_not_stored(tmp_path: Path, request_: Request, response: Response) -> None:
    key = cache_key(IDENTITY, request_)
    with ResponseCache(tmp_path) as cache:
        assert cache.put_many([(key, request_, response)]) == 0
        assert cache.writes == 0
        assert cache.get(key) is None
        assert cache.misses == 1


def test_put_many_counts_only_what_it_stores(tmp_path: Path) -> None:
    entries = make_entries(4)
    sampled = make_request("sampled", gen=GenParams(temperature=1.0))
    mixed = [*entries, (cache_key(IDENTITY, sampled), sampled, Response("x"))]
    with ResponseCache(tmp_path) as cache:
        assert cache.put_many(mixed) == 4
        assert len(cache.get_many([key for key, _, _ in mixed])) == 4


def test_a_later_put_replaces_an_entry(tmp_path: Path) -> None:
    [(key, request, response)] = make_entries(1)
    with ResponseCache(tmp_path) as cache:
        cache.put_many([(key, request, response)])
        cache.put_many([(key, request, Response("revised"))])
        assert cache.get(key) == Response("revised", cached=True)


def test_get_many_queries_in_chunks_of_500(tmp_path: Path) -> None:
    entries = make_entries(1200)
    absent = [hashlib.sha256(f"absent {i}".encode()).hexdigest() for i in range(300)]
    with ResponseCache(tmp_path) as cache:
        cache.put_many(entries)
        statements: list[str] = []
        # Private access on purpose: the number of SELECTs is the contract under test.
        cache._conn.set_trace_callback(statements.append)
        found = cache.get_many([*keys_of(entries), *absent, *keys_of(entries[:10])])
        cache._conn.set_trace_callback(None)
        assert (cache.hits, cache.misses) == (1200, 300)
    assert set(found) == set(keys_of(entries))
    assert sum(s.lstrip().upper().startswith("SELECT") for s in statements) == 3


@pytest.mark.parametrize(
    "corrupt_value",
    [b"{not json", orjson.dumps({"meta": {}}), orjson.dumps(["a", "list"])],
    ids=["undecodable", "missing-text", "not-an-object"],
)
def test_corrupt_row_is_a_warned_miss_then_overwritten(tmp_path: Path, corrupt_value: bytes) -> None:
    [(key, request, response)] = make_entries(1)
    with ResponseCache(tmp_path) as cache:
        cache.put_many([(key, request, response)])
        with raw_db(tmp_path) as conn:
            conn.execute("UPDATE responses SET value = ? WHERE key = ?", (corrupt_value, key))
        with pytest.warns(CacheWarning, match=key) as caught:
            assert cache.get(key) is None
        assert str(tmp_path / "responses.sqlite") in str(caught[0].message)
        assert (cache.hits, cache.misses) == (0, 1)

        assert cache.put_many([(key, request, response)]) == 1
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert cache.get(key) == dataclasses.replace(response, cached=True)


# -- lifecycle and errors ----------------------------------------------------------------------


def test_close_removes_own_log_and_is_idempotent(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path)
    cache.put_many(make_entries(2))
    assert len(wal_logs(tmp_path)) == 1
    cache.close()
    cache.close()
    assert wal_logs(tmp_path) == []
    with pytest.raises(CacheError, match="closed"):
        cache.put_many(make_entries(1))
    with pytest.raises(CacheError, match="closed"):
        cache.get("0" * 64)


def test_unserializable_meta_is_a_clear_error_and_writes_nothing(tmp_path: Path) -> None:
    request = make_request()
    bad = Response("B", meta={"handle": object()})
    with ResponseCache(tmp_path) as cache:
        with pytest.raises(CacheError, match="mmmu_val/7"):
            cache.put_many([*make_entries(2), (cache_key(IDENTITY, request), request, bad)])
        assert wal_logs(tmp_path)[0].read_bytes() == b""
        assert cache.writes == 0


def test_directory_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    target = tmp_path / "cache"
    target.write_text("not a directory")
    with pytest.raises(CacheError, match=re.escape(str(target))):
        ResponseCache(target)


def test_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "responses.sqlite").write_bytes(b"definitely not SQLite " * 200)
    with pytest.raises(CacheError, match="not usable") as caught:
        ResponseCache(tmp_path)
    assert str(tmp_path / "responses.sqlite") in str(caught.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only directories")
def test_read_only_directory_is_a_clear_error(tmp_path: Path) -> None:
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(CacheError, match=re.escape(str(tmp_path))):
            ResponseCache(tmp_path)
    finally:
        tmp_path.chmod(0o755)


def test_background_thread_puts_while_main_thread_gets(tmp_path: Path) -> None:
    entries = make_entries(600)
    errors: list[BaseException] = []
    with ResponseCache(tmp_path) as cache:

        def write() -> None:
            try:
                for start in range(0, len(entries), 50):
                    cache.put_many(entries[start : start + 50])
            except BaseException as exc:  # surfaced by the assertion below
                errors.append(exc)

        writer = threading.Thread(target=write)
        writer.start()
        while writer.is_alive():
            cache.get_many(keys_of(entries))
        writer.join()
        assert errors == []
        assert len(cache.get_many(keys_of(entries))) == 600


# -- crashes and sharing -----------------------------------------------------------------------

KILLED_AFTER_SQLITE = """
    import os, signal
    from pytest_lmms.cache import ResponseCache
    from test_cache import make_entries
    cache = ResponseCache(sys.argv[1])
    cache.put_many(make_entries(50))
    os.kill(os.getpid(), signal.SIGKILL)
"""

KILLED_BEFORE_SQLITE = """
    import os, signal
    from pytest_lmms.cache import ResponseCache
    from test_cache import make_entries

    class KilledBeforeSqlite(ResponseCache):
        def _write_sqlite(self, rows):
            os.kill(os.getpid(), signal.SIGKILL)

    cache = KilledBeforeSqlite(sys.argv[1])
    cache.put_many(make_entries(50))
"""


@pytest.mark.parametrize(
    ("child", "rows_in_sqlite"),
    [
        pytest.param(KILLED_AFTER_SQLITE, 50, id="killed-after-sqlite"),
        pytest.param(KILLED_BEFORE_SQLITE, 0, id="killed-before-sqlite"),
    ],
)
def test_killed_process_loses_nothing(tmp_path: Path, child: str, rows_in_sqlite: int) -> None:
    kill_child(child, str(tmp_path))
    [orphan] = wal_logs(tmp_path)
    with raw_db(tmp_path) as conn:
        assert conn.execute("SELECT count(*) FROM responses").fetchone()[0] == rows_in_sqlite

    with ResponseCache(tmp_path) as cache:
        assert not orphan.exists()
        found = cache.get_many(keys_of(make_entries(50)))
    assert len(found) == 50


def test_torn_last_log_line_is_skipped_with_a_warning(tmp_path: Path) -> None:
    kill_child(KILLED_BEFORE_SQLITE, str(tmp_path))
    [orphan] = wal_logs(tmp_path)
    torn_key = "f" * 64
    with orphan.open("ab") as log:
        log.write(b'{"key":"' + torn_key.encode() + b'","value":{"text":"half an ans')

    with pytest.warns(CacheWarning, match=re.escape(f"{orphan}:51")):
        cache = ResponseCache(tmp_path)
    with cache:
        assert len(cache.get_many(keys_of(make_entries(50)))) == 50
        assert cache.get(torn_key) is None
    assert not orphan.exists()


HOLDS_ITS_LOG = """
    import os
    from pytest_lmms.cache import ResponseCache
    from test_cache import make_entries

    class LogOnly(ResponseCache):
        def _write_sqlite(self, rows):
            pass

    cache = LogOnly(sys.argv[1])
    cache.put_many(make_entries(20))
    print("ready", flush=True)
    sys.stdin.read()
    os._exit(0)  # dies without close: its log becomes an orphan
"""


def test_log_of_a_live_process_is_left_alone(tmp_path: Path) -> None:
    keys = keys_of(make_entries(20))
    with subprocess.Popen(
        child_command(HOLDS_ITS_LOG, str(tmp_path)),
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as owner:
        try:
            assert owner.stdout is not None
            assert owner.stdout.readline() == b"ready\n"
            [live_log] = wal_logs(tmp_path)
            logged = live_log.read_bytes()

            with ResponseCache(tmp_path) as cache:
                assert cache.get_many(keys) == {}
            assert live_log.read_bytes() == logged
        except BaseException as exc:
            owner.kill()
            exc.add_note(owner.communicate()[1].decode())
            raise
        _, stderr = owner.communicate(timeout=30)  # closes its stdin: the owner dies
        assert owner.returncode == 0, stderr.decode()

    with ResponseCache(tmp_path) as cache:
        assert len(cache.get_many(keys)) == 20
    assert not live_log.exists()


WRITER = """
    from pytest_lmms.cache import ResponseCache
    from test_cache import make_entries
    entries = make_entries(2000, prefix=sys.argv[2])
    sys.stdin.readline()  # start together
    with ResponseCache(sys.argv[1]) as cache:
        for start in range(0, len(entries), 100):
            if cache.put_many(entries[start : start + 100]) != 100:
                sys.exit("not all entries were stored")
"""


def test_two_processes_share_one_directory(tmp_path: Path) -> None:
    writers = [
        subprocess.Popen(
            child_command(WRITER, str(tmp_path), prefix),
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for prefix in ("a", "b")
    ]
    try:
        for writer in writers:
            assert writer.stdin is not None
            writer.stdin.write(b"go\n")
            writer.stdin.flush()
        for writer in writers:
            _, stderr = writer.communicate(timeout=60)
            assert writer.returncode == 0, stderr.decode()
    finally:
        for writer in writers:
            writer.kill()
            writer.wait()

    keys = keys_of(make_entries(2000, "a")) + keys_of(make_entries(2000, "b"))
    with ResponseCache(tmp_path) as cache:
        assert len(cache.get_many(keys)) == 4000
    assert wal_logs(tmp_path) == []
