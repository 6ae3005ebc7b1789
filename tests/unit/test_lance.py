"""Lance-packed tasks: ``pytest-lmms pack``, ``LanceMediaStore`` and ``dataset_path: lance://``.

Every test packs a real task written to ``tmp_path`` (YAML, jsonl or parquet rows, PNG
files, an MP4 made with PyAV) and compares what Lance holds with the original files.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

lance = pytest.importorskip("lance")

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from PIL import Image  # noqa: E402

from pytest_lmms.cache import cache_key  # noqa: E402
from pytest_lmms.cli import main  # noqa: E402
from pytest_lmms.media import LanceError, LanceMediaStore, MediaEntry, pack  # noqa: E402
from pytest_lmms.tasks import DatasetError, Task, load_task  # noqa: E402
from pytest_lmms.types import MediaRef, VideoSampling  # noqa: E402

IDENTITY = {"backend": "scripted", "model": "m", "base_url": "http://localhost:1"}

UTILS = """
def doc_to_messages(doc):
    content = []
    if doc.get("image"):
        content.append({"type": "image", "image": doc["image"]})
    for image in doc.get("images") or []:
        content.append({"type": "image", "image": image})
    if doc.get("video"):
        content.append({"type": "video", "video": doc["video"], "sampling": {"num_frames": 2}})
    if doc.get("frame"):  # a path the function computes: no column holds it
        content.append({"type": "image", "image": "media/" + doc["frame"] + ".png"})
    content.append({"type": "text", "text": "Q: " + doc["question"]})
    return [{"role": "user", "content": content}]
"""

TASK_YAML = """\
task: {name}
dataset_path: {data}
doc_to_messages: !function utils.doc_to_messages
doc_to_target: answer
metric_list:
  - metric: exact_match
"""

ROWS: list[dict[str, Any]] = [
    {"id": "q1", "image": "media/a.png", "question": "colour?", "answer": "red", "meta": {"k": [1, 2]}},
    {"id": "q2", "image": {"bytes": None, "path": "media/b.png"}, "question": "shape?", "answer": "square"},
    {"id": "q3", "images": ["media/a.png", "media/c.png"], "question": "same?", "answer": "no"},
    {"id": "q4", "video": "media/clip.mp4", "question": "motion?", "answer": "left"},
    {"id": "q5", "question": "text only", "answer": "yes", "score": 0.5},
]


def png(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def mp4(path: Path) -> None:
    import av
    import numpy as np

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=4)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        for i in range(4):
            image = np.full((16, 16, 3), 60 * i, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_task(folder: Path, rows: list[dict[str, Any]], name: str = "lance_fixture") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "utils.py").write_text(UTILS)
    with open(folder / "rows.jsonl", "w") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    path = folder / "task.yaml"
    path.write_text(TASK_YAML.format(name=name, data="rows.jsonl"))
    return path


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """The original task: jsonl rows, PNG files and an MP4 in ``tmp_path/task``."""
    media = tmp_path / "task" / "media"
    media.mkdir(parents=True)
    (media / "a.png").write_bytes(png((255, 0, 0)))
    (media / "b.png").write_bytes(png((0, 255, 0)))
    (media / "c.png").write_bytes(png((0, 0, 255)))
    mp4(media / "clip.mp4")
    return write_task(tmp_path / "task", ROWS)


def file_bytes(source: Path, name: str) -> bytes:
    return (source.parent / "media" / name).read_bytes()


def packed_task(folder: Path, source: Path, dataset: str, name: str = "lance_packed") -> Task:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(f"include: {source}\ntask: {name}\ndataset_path: lance://{dataset}\n")
    return load_task(path)


# ---- pack ------------------------------------------------------------------------------


def test_pack_writes_one_row_per_document_with_the_files_bytes_and_hashes(
    source: Path, tmp_path: Path
) -> None:
    out = tmp_path / "packed" / "fixture.lance"
    summary = pack(load_task(source), out, log=None)
    assert (summary.docs, summary.media, summary.slots, summary.unplaced) == (5, 5, 2, 0)

    dataset = lance.dataset(str(out))
    assert dataset.schema.names == ["doc_id", "doc", "media", "media_0", "media_1"]
    assert dataset.schema.metadata[b"pytest_lmms.media_slots"] == b"2"
    table = dataset.to_table(columns=["doc_id", "doc", "media"]).to_pylist()
    assert [row["doc_id"] for row in table] == ["q1", "q2", "q3", "q4", "q5"]

    expected = {  # doc id -> [(file, kind, column, position)] in request order
        "q1": [("a.png", "image", "image", None)],
        "q2": [("b.png", "image", "image", None)],
        "q3": [("a.png", "image", "images", 0), ("c.png", "image", "images", 1)],
        "q4": [("clip.mp4", "video", "video", None)],
        "q5": [],
    }
    for row_index, row in enumerate(table):
        items = expected[row["doc_id"]]
        assert [(e["kind"], e["column"], e["position"]) for e in row["media"]] == [i[1:] for i in items]
        assert [e["sha256"] for e in row["media"]] == [sha256(file_bytes(source, i[0])) for i in items]
        for slot in range(2):
            (_, blob), *_ = dataset.read_blobs(f"media_{slot}", indices=[row_index], preserve_order=True)
            assert blob == (file_bytes(source, items[slot][0]) if slot < len(items) else None)

    docs = [json.loads(row["doc"]) for row in table]
    assert docs[0] == {
        "id": "q1",
        "image": None,
        "question": "colour?",
        "answer": "red",
        "meta": {"k": [1, 2]},
    }
    assert docs[1]["image"] is None  # the HF {"bytes", "path"} dict is the medium
    assert docs[2]["images"] == [None, None]
    assert docs[4] == ROWS[4]


def test_pack_streams_batches_and_reports_progress(source: Path, tmp_path: Path) -> None:
    lines: list[str] = []
    out = tmp_path / "fixture.lance"
    pack(load_task(source), out, batch_rows=2, progress_every=2, log=lines.append)
    assert lines == [
        "counting the media of 5 documents",
        f"packed 2/5 documents (2 media, {sum_bytes(source, 2) / 1e6:.1f} MB)",
        f"packed 4/5 documents (5 media, {sum_bytes(source, 4) / 1e6:.1f} MB)",
    ]
    assert lance.dataset(str(out)).count_rows() == 5


def sum_bytes(source: Path, docs: int) -> int:
    names = {"q1": ["a.png"], "q2": ["b.png"], "q3": ["a.png", "c.png"], "q4": ["clip.mp4"], "q5": []}
    return sum(len(file_bytes(source, n)) for row in ROWS[:docs] for n in names[row["id"]])


def test_missing_media_names_the_document_and_path_and_leaves_no_dataset(
    source: Path, tmp_path: Path
) -> None:
    (source.parent / "media" / "c.png").unlink()
    out = tmp_path / "packed" / "fixture.lance"
    with pytest.raises(LanceError) as error:
        pack(load_task(source), out, batch_rows=1, log=None)
    message = str(error.value)
    assert "document 'q3'" in message
    assert str(source.parent / "media" / "c.png") in message
    assert "FileNotFoundError" in message
    assert not out.exists()
    assert list((tmp_path / "packed").iterdir()) == []  # no partial folder either


def test_pack_refuses_an_existing_dataset_unless_told_to_replace_it(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "fixture.lance"
    pack(load_task(source), out, limit=1, log=None)
    with pytest.raises(LanceError, match="already exists"):
        pack(load_task(source), out, log=None)
    pack(load_task(source), out, overwrite=True, log=None)
    assert lance.dataset(str(out)).count_rows() == 5
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# ---- the lance:// source ---------------------------------------------------------------


def test_lance_source_builds_the_same_requests_and_cache_keys(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = load_task(source)
    pack(original, tmp_path / "packed" / "fixture.lance", log=None)
    blob_reads: list[str] = []
    take_blobs = lance.LanceDataset.take_blobs

    def counting_take_blobs(self: Any, column: str, *args: Any, **kwargs: Any) -> Any:
        blob_reads.append(column)
        return take_blobs(self, column, *args, **kwargs)

    monkeypatch.setattr(lance.LanceDataset, "take_blobs", counting_take_blobs)

    packed = packed_task(tmp_path / "packed", source, "fixture.lance")
    assert packed.doc_ids() == original.doc_ids() == ["q1", "q2", "q3", "q4", "q5"]
    assert packed.doc_ids(limit=2) == ["q1", "q2"]
    for doc_id in original.doc_ids():
        before = original.request(original.doc(doc_id))
        after = packed.request(packed.doc(doc_id))
        assert after.doc_id == doc_id
        assert after.canonical() == before.canonical()
        assert cache_key(IDENTITY, after) == cache_key(IDENTITY, before)
    assert blob_reads == []  # hashes come from the stored sha256

    (image, other) = packed.request(packed.doc("q3")).media
    assert image.content_hash == sha256(file_bytes(source, "a.png"))
    assert other.read_bytes() == file_bytes(source, "c.png")
    assert blob_reads == ["media_1"]


def test_lance_ids_come_from_a_projection_of_the_doc_id_column(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pack(load_task(source), tmp_path / "fixture.lance", log=None)
    reads: list[tuple[str, Any]] = []
    to_table, take = lance.LanceDataset.to_table, lance.LanceDataset.take

    def recording_to_table(self: Any, columns: Any = None, **kwargs: Any) -> Any:
        reads.append(("to_table", columns))
        return to_table(self, columns=columns, **kwargs)

    def recording_take(self: Any, indices: Any, columns: Any = None) -> Any:
        reads.append(("take", (list(indices), columns)))
        return take(self, indices, columns=columns)

    monkeypatch.setattr(lance.LanceDataset, "to_table", recording_to_table)
    monkeypatch.setattr(lance.LanceDataset, "take", recording_take)
    packed = packed_task(tmp_path, source, "fixture.lance")
    assert packed.doc_ids() == ["q1", "q2", "q3", "q4", "q5"]
    assert reads == [("to_table", ["doc_id"])]
    doc = packed.doc("q4")
    assert reads[1:] == [("take", ([3], ["doc", "media"]))]
    assert isinstance(doc["video"], MediaRef) and doc["question"] == "motion?"


def test_lance_video_decodes_from_its_blob(source: Path, tmp_path: Path) -> None:
    pytest.importorskip("av")
    from pytest_lmms.media import decode_video

    pack(load_task(source), tmp_path / "fixture.lance", log=None)
    packed = packed_task(tmp_path, source, "fixture.lance")
    (part,) = [p for p in packed.request(packed.doc("q4")).messages[0].content if p.type == "video"]
    assert part.media.path is None and part.sampling == VideoSampling(num_frames=2)
    frames = decode_video(part.media, part.sampling, decoder="pyav")
    assert frames.shape == (2, 16, 16, 3)


def test_a_missing_lance_dataset_is_a_dataset_error_naming_it(tmp_path: Path) -> None:
    write_task(tmp_path, ROWS[4:])
    path = tmp_path / "missing.yaml"
    path.write_text("include: task.yaml\ntask: missing\ndataset_path: lance://nowhere/gone.lance\n")
    with pytest.raises(DatasetError) as error:
        load_task(path).doc_ids()
    assert "missing.yaml" in str(error.value)
    assert f"no such Lance dataset {tmp_path / 'nowhere' / 'gone.lance'}" in str(error.value)


def test_a_folder_that_is_no_packed_dataset_is_a_dataset_error(tmp_path: Path) -> None:
    write_task(tmp_path, ROWS[4:])
    lance.write_dataset(pa.table({"x": [1]}), str(tmp_path / "plain.lance"))
    path = tmp_path / "plain.yaml"
    path.write_text("include: task.yaml\ntask: plain\ndataset_path: lance://plain.lance\n")
    with pytest.raises(DatasetError, match="not written by 'pytest-lmms pack'"):
        load_task(path).doc_ids()


def test_an_unknown_document_id_is_a_dataset_error(source: Path, tmp_path: Path) -> None:
    pack(load_task(source), tmp_path / "fixture.lance", log=None)
    with pytest.raises(DatasetError, match="no document with id 'q9'"):
        packed_task(tmp_path, source, "fixture.lance").doc("q9")


def test_in_memory_media_rows_without_ids_and_computed_paths(tmp_path: Path) -> None:
    """Parquet image structs holding bytes match by hash; documents without an id keep their
    row number; a path the function computes is stored but not put back in a column."""
    folder = tmp_path / "task"
    (folder / "media").mkdir(parents=True)
    (folder / "media" / "f0.png").write_bytes(png((9, 9, 9)))
    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table(
        {
            "image": pa.array(
                [{"bytes": png((1, 2, 3)), "path": None}, {"bytes": png((4, 5, 6)), "path": None}], image
            ),
            "frame": ["f0", None],
            "question": ["one", "two"],
            "answer": ["a", "b"],
        }
    )
    pq.write_table(table, folder / "rows.parquet")
    write_task(folder, [])
    (folder / "task.yaml").write_text(TASK_YAML.format(name="bytes_task", data="rows.parquet"))
    original = load_task(folder / "task.yaml")
    summary = pack(original, tmp_path / "bytes.lance", log=None)
    assert (summary.docs, summary.media, summary.unplaced) == (2, 3, 1)

    store = LanceMediaStore(tmp_path / "bytes.lance")
    assert store.doc_ids() == ["0", "1"]
    assert store.entries("0") == [
        MediaEntry("image", sha256(png((1, 2, 3))), None, "image", None),
        MediaEntry("image", sha256((folder / "media" / "f0.png").read_bytes()), None, None, None),
    ]
    assert store.media("0", 1).read_bytes() == (folder / "media" / "f0.png").read_bytes()

    # the computed path resolves from the packed YAML's folder: put it next to the original
    packed = packed_task(folder, folder / "task.yaml", "../bytes.lance")
    for doc_id in ("0", "1"):
        before, after = original.request(original.doc(doc_id)), packed.request(packed.doc(doc_id))
        assert after.doc_id == doc_id
        assert cache_key(IDENTITY, after) == cache_key(IDENTITY, before)


# ---- LanceMediaStore -------------------------------------------------------------------


def test_store_reads_media_by_row_or_document_id(source: Path, tmp_path: Path) -> None:
    pack(load_task(source), tmp_path / "fixture.lance", log=None)
    store = LanceMediaStore(tmp_path / "fixture.lance")
    assert len(store) == 5 and store.slots == 2 and store.task == "lance_fixture"
    by_id, by_row = store.media("q3", 1), store.media(2, 1)
    assert by_id.content_hash == by_row.content_hash == sha256(file_bytes(source, "c.png"))
    assert by_id.read_bytes() == by_row.read_bytes() == file_bytes(source, "c.png")
    assert store.media("q4", 0).kind == "video"
    with pytest.raises(IndexError, match="has 1 media items, not 2"):
        store.media("q1", 1)
    with pytest.raises(IndexError, match="row 5 out of range"):
        store.media(5, 0)
    with pytest.raises(KeyError, match="no document with id 'nope'"):
        store.media("nope", 0)
    with pytest.raises(LanceError, match="no such Lance dataset"):
        LanceMediaStore(tmp_path / "absent.lance")


# ---- CLI -------------------------------------------------------------------------------


def test_cli_pack_by_task_name_with_limit(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli.lance"
    code = main(
        [
            "pack",
            "lance_fixture",
            "--tasks-dir",
            str(source.parent),
            "--out",
            str(out),
            "--limit",
            "3",
            "--progress-every",
            "2",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out.startswith(f"wrote {out}: 3 documents, 4 media items")
    assert captured.err.splitlines()[1].startswith("packed 2/3 documents (2 media,")
    assert LanceMediaStore(out).doc_ids() == ["q1", "q2", "q3"]


def test_cli_pack_by_path_and_its_errors(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli.lance"
    assert main(["pack", str(source), "--out", str(out)]) == 0
    assert main(["pack", str(source), "--out", str(out)]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["pack", str(source), "--out", str(out), "--overwrite"]) == 0
    (source.parent / "media" / "b.png").unlink()
    assert main(["pack", str(source), "--out", str(tmp_path / "other.lance")]) == 1
    err = capsys.readouterr().err
    assert "document 'q2'" in err and "b.png" in err
    assert main(["pack", "no_such_task", "--tasks-dir", str(source.parent), "--out", str(out)]) == 1
    assert "no task named 'no_such_task'" in capsys.readouterr().err


def test_cli_tasks_counts_the_rows_of_a_lance_dataset(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pack(load_task(source), source.parent / "fixture.lance", log=None)
    (source.parent / "packed.yaml").write_text(
        textwrap.dedent(
            """\
            include: task.yaml
            task: lance_packed
            dataset_path: lance://fixture.lance
            """
        )
    )
    assert main(["tasks", str(source.parent)]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[2:]}
    assert rows["lance_packed"][-2] == "5"  # the docs column, before the YAML path


def test_importing_the_package_does_not_import_lance_or_pyarrow() -> None:
    code = (
        "import sys, pytest_lmms, pytest_lmms.tasks, pytest_lmms.media, pytest_lmms.cli; "
        "print(','.join(m for m in ('lance', 'pyarrow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
