"""Lance-backed media: a task's documents and media packed into one Lance dataset, read back
by row without a scan.

``pytest-lmms pack TASK --out DIR.lance`` renders every document's request and writes one
row per document, in the task's document order:

=====================  =====================================================================
``doc_id``             string: the task's document id
``doc``                large_string: the document's columns as JSON; a column that held a
                       media item is null there (a list column: null at that index)
``media``              list<struct<kind, sha256, mime, column, position>>: one entry per
                       media item of the request, in request order; ``column`` (and
                       ``position`` for a list column) name where the item was in the document
``media_0`` ...        large_binary with Lance blob encoding (field metadata
``media_{K-1}``        ``{"lance-encoding:blob": "true"}``): the bytes of media item k, null
                       when the document has fewer; K = the most media items of any document
=====================  =====================================================================

Schema metadata: ``pytest_lmms.format`` ("1"), ``pytest_lmms.media_slots`` (K),
``pytest_lmms.task`` and ``pytest_lmms.doc_id_column``.

Media item k of the document at row r is ``take_blobs("media_k", indices=[r])``: one
random read, no scan; the doc_id -> row map comes from a projection of the doc_id column.
``sha256`` is the content hash the original request used, so a MediaRef read back has the
same hash without reading its blob, and a request's response-cache key does not change when
its task moves to the packed dataset.

A task reads a packed dataset with ``dataset_path: lance://path.lance`` (relative to the
YAML's folder, or ``lance:///absolute/path.lance``): each media item is put back into its
document column as a lazy MediaRef, so a ``doc_to_messages`` that passes its media columns
into the parts unchanged builds the same request. A medium that does not come from a
top-level column (a path the function computes) is still stored, and
``LanceMediaStore.media(doc_id, k)`` serves it, but the document does not carry it; ``pack``
counts such items. Other columns come back as their JSON form (tuples as lists); a column
that is neither media nor JSON data (a PIL image no request uses) is left out, and ``pack``
names it.

The writer streams record batches (at most ``batch_rows`` rows or about ``batch_bytes`` of
media each) into a temporary folder next to ``DIR.lance`` and renames it at the end; a
media item that cannot be read stops the pack with the document id and the path, and leaves
no dataset behind. ``lance`` and ``pyarrow`` are imported only when used.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from pytest_lmms.types import MediaKind, MediaPart, MediaRef

if TYPE_CHECKING:
    import pyarrow as pa

    from pytest_lmms.tasks import Task

FORMAT_VERSION = "1"
BLOB_METADATA = {"lance-encoding:blob": "true"}
_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
_MAX_PATH_CHARS = 4096


class LanceError(RuntimeError):
    """A packed dataset that cannot be written or read; the message names the dataset, and
    the document and media path when one is the cause."""


@dataclass(frozen=True, slots=True)
class MediaEntry:
    """What the ``media`` column records about one media item of a document."""

    kind: MediaKind
    sha256: str
    mime: str | None = None
    column: str | None = None  # the document column the item came from
    position: int | None = None  # its index when that column is a list

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "sha256": self.sha256,
            "mime": self.mime,
            "column": self.column,
            "position": self.position,
        }


@dataclass(frozen=True, slots=True)
class PackSummary:
    path: Path
    docs: int
    media: int
    media_bytes: int
    slots: int
    unplaced: int  # media items that come from no top-level document column
    dropped_columns: tuple[str, ...]  # columns left out: neither media nor JSON data
    seconds: float


def _media_entry_type() -> pa.DataType:
    import pyarrow as pa

    return pa.list_(
        pa.struct(
            [
                ("kind", pa.string()),
                ("sha256", pa.string()),
                ("mime", pa.string()),
                ("column", pa.string()),
                ("position", pa.int32()),
            ]
        )
    )


def pack_schema(slots: int, task_name: str = "", doc_id_column: str = "id") -> pa.Schema:
    """The packed dataset's schema for documents with at most ``slots`` media items."""
    import pyarrow as pa

    fields = [
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("doc", pa.large_string(), nullable=False),
        pa.field("media", _media_entry_type(), nullable=False),
    ]
    fields += [pa.field(blob_column(k), pa.large_binary(), metadata=BLOB_METADATA) for k in range(slots)]
    metadata = {
        "pytest_lmms.format": FORMAT_VERSION,
        "pytest_lmms.media_slots": str(slots),
        "pytest_lmms.task": task_name,
        "pytest_lmms.doc_id_column": doc_id_column,
    }
    return pa.schema(fields, metadata=metadata)


def blob_column(index: int) -> str:
    return f"media_{index}"


# ---- writing -------------------------------------------------------------------------


@dataclass
class _PackedDoc:
    doc_id: str
    doc_json: str
    entries: list[MediaEntry]
    payloads: list[bytes]


def _media_parts(task: Task, doc_id: str, doc: Mapping[str, Any]) -> list[MediaPart]:
    try:
        request = task.request(doc)
    except Exception as exc:  # noqa: BLE001 - named with the document
        raise LanceError(
            f"task '{task.name}': document {doc_id!r}: its request cannot be rendered: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    return [part for message in request.messages for part in message.content if isinstance(part, MediaPart)]


def _describe(media: MediaRef) -> str:
    return str(media.path) if media.path is not None else "in-memory media"


def _normalized(path: str | Path) -> str:
    return os.path.normpath(os.path.abspath(path))


def _png_sha256(image: Any) -> str:
    # the same encoding as tasks' to_media for a PIL image, so equal images give equal hashes
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return hashlib.sha256(buffer.getvalue()).hexdigest()


def _value_key(value: Any, folder: Path) -> tuple[str, str] | None:
    """How a document value identifies a medium: ("path", normalized path) or ("sha256", hash)."""
    if isinstance(value, MediaRef):
        return ("sha256", value.content_hash)
    if isinstance(value, (bytes, bytearray)):
        return ("sha256", hashlib.sha256(value).hexdigest())
    if isinstance(value, Mapping):  # HF Image / Audio: {"bytes": ..., "path": ...}
        if value.get("bytes"):
            return ("sha256", hashlib.sha256(value["bytes"]).hexdigest())
        return _value_key(value.get("path"), folder) if value.get("path") else None
    if isinstance(value, (str, Path)):
        text = str(value)
        if not text or len(text) > _MAX_PATH_CHARS or "\n" in text:
            return None
        path = Path(text).expanduser()
        return ("path", _normalized(path if path.is_absolute() else folder / path))
    if hasattr(value, "save") and hasattr(value, "mode"):  # a PIL image
        return ("sha256", _png_sha256(value))
    return None


def _matches(key: tuple[str, str], media: MediaRef) -> bool:
    kind, value = key
    if kind == "path":
        return media.path is not None and _normalized(media.path) == value
    return media.content_hash == value


def find_columns(
    doc: Mapping[str, Any], media: Sequence[MediaRef], folder: Path, skip: str | None = None
) -> list[tuple[str, int | None] | None]:
    """For each media item, the (column, list index or None) of ``doc`` it came from, or None.

    A path value matches a medium read from that path (relative to ``folder``, as tasks
    resolve it); bytes, HF dicts with bytes and PIL images match by content hash.
    """
    places: list[tuple[str, int | None] | None] = [None] * len(media)
    for column, value in doc.items():
        if column == skip or all(place is not None for place in places):
            continue
        cells = list(enumerate(value)) if isinstance(value, (list, tuple)) else [(None, value)]
        for position, cell in cells:
            key: tuple[str, str] | None = None
            for index, item in enumerate(media):
                if places[index] is not None:
                    continue
                if cell is item:
                    places[index] = (column, position)
                    continue
                if key is None:
                    key = _value_key(cell, folder)
                    if key is None:
                        break
                if _matches(key, item):
                    places[index] = (column, position)
    return places


def _doc_json(
    doc: Mapping[str, Any], places: Sequence[tuple[str, int | None] | None]
) -> tuple[str, list[str]]:
    """The document as JSON with its media cells set to null, and the columns left out."""
    cells = {place for place in places if place is not None}
    clean: dict[str, Any] = {}
    dropped: list[str] = []
    for column, value in doc.items():
        if (column, None) in cells:
            clean[str(column)] = None
            continue
        if isinstance(value, (list, tuple)) and any(c == column for c, _ in cells):
            value = [None if (column, i) in cells else v for i, v in enumerate(value)]
        try:
            orjson.dumps(value, option=_JSON_OPTIONS)
        except TypeError:
            dropped.append(str(column))
            continue
        clean[str(column)] = value
    return orjson.dumps(clean, option=_JSON_OPTIONS).decode(), dropped


class _Batches:
    """Record batches of packed documents; remembers the error that stopped it, because
    Lance reports a failing reader as an OSError wrapping the Python traceback."""

    def __init__(
        self,
        task: Task,
        doc_ids: Sequence[str],
        slots: int,
        schema: pa.Schema,
        batch_rows: int,
        batch_bytes: int,
        progress_every: int,
        log: Callable[[str], None] | None,
    ) -> None:
        self.task = task
        self.doc_ids = doc_ids
        self.slots = slots
        self.schema = schema
        self.batch_rows = max(1, batch_rows)
        self.batch_bytes = batch_bytes
        self.progress_every = progress_every
        self.log = log
        self.error: BaseException | None = None
        self.docs = 0
        self.media = 0
        self.media_bytes = 0
        self.unplaced = 0
        self.dropped: dict[str, None] = {}

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        try:
            yield from self._batches()
        except BaseException as exc:
            self.error = exc
            raise

    def _batches(self) -> Iterator[pa.RecordBatch]:
        pending: list[_PackedDoc] = []
        pending_bytes = 0
        for doc_id in self.doc_ids:
            packed = self._pack(doc_id)
            pending.append(packed)
            pending_bytes += sum(len(p) for p in packed.payloads)
            self.docs += 1
            if self.progress_every and self.log and self.docs % self.progress_every == 0:
                self.log(
                    f"packed {self.docs}/{len(self.doc_ids)} documents "
                    f"({self.media} media, {self.media_bytes / 1e6:.1f} MB)"
                )
            if len(pending) >= self.batch_rows or pending_bytes >= self.batch_bytes:
                yield self._record_batch(pending)
                pending, pending_bytes = [], 0
        if pending:
            yield self._record_batch(pending)

    def _pack(self, doc_id: str) -> _PackedDoc:
        task = self.task
        doc = task.doc(doc_id)
        parts = _media_parts(task, doc_id, doc)
        if len(parts) > self.slots:
            raise LanceError(
                f"task '{task.name}': document {doc_id!r} now has {len(parts)} media items, "
                f"{self.slots} when counted (doc_to_messages must be deterministic)"
            )
        payloads: list[bytes] = []
        hashes: list[str] = []
        for index, part in enumerate(parts):
            try:
                payloads.append(part.media.read_bytes())
                # the hash the request's cache key uses: given, or computed from these bytes
                hashes.append(part.media.content_hash)
            except Exception as exc:  # noqa: BLE001 - named with the document and the path
                raise LanceError(
                    f"task '{task.name}': document {doc_id!r}: {part.type} {index} "
                    f"({_describe(part.media)}) cannot be read: {type(exc).__name__}: {exc}"
                ) from exc
            part.media.release()
            self.media_bytes += len(payloads[-1])
        media = [part.media for part in parts]
        places = find_columns(doc, media, task.spec.folder, skip=task.spec.doc_id_column)
        doc_json, dropped = _doc_json(doc, places)
        self.dropped.update(dict.fromkeys(dropped))
        self.media += len(parts)
        self.unplaced += sum(place is None for place in places)
        entries = [
            MediaEntry(
                kind=part.type,
                sha256=content_hash,
                mime=part.media.mime,
                column=None if place is None else place[0],
                position=None if place is None else place[1],
            )
            for part, content_hash, place in zip(parts, hashes, places, strict=True)
        ]
        return _PackedDoc(doc_id, doc_json, entries, payloads)

    def _record_batch(self, docs: list[_PackedDoc]) -> pa.RecordBatch:
        import pyarrow as pa

        columns = [
            pa.array([d.doc_id for d in docs], pa.string()),
            pa.array([d.doc_json for d in docs], pa.large_string()),
            pa.array([[e.as_dict() for e in d.entries] for d in docs], _media_entry_type()),
        ]
        for k in range(self.slots):
            payloads = [d.payloads[k] if k < len(d.payloads) else None for d in docs]
            columns.append(pa.array(payloads, pa.large_binary()))
        return pa.RecordBatch.from_arrays(columns, schema=self.schema)


def pack(
    task: Task,
    out: str | Path,
    *,
    limit: int | None = None,
    overwrite: bool = False,
    progress_every: int = 1000,
    batch_rows: int = 64,
    batch_bytes: int = 64 << 20,
    log: Callable[[str], None] | None = print,
) -> PackSummary:
    """Write ``task``'s documents (the first ``limit``) and their media to a Lance dataset at
    ``out``; see the module docstring for the layout. Nothing is left at ``out`` on failure."""
    import lance
    import pyarrow as pa

    start = time.perf_counter()
    out = Path(out)
    if out.exists() and not overwrite:
        raise LanceError(f"{out} already exists (remove it, or overwrite it)")
    doc_ids = task.doc_ids(limit)
    if not doc_ids:
        raise LanceError(f"task '{task.name}': no documents to pack")
    # The schema needs the number of blob columns up front: count each request's media
    # (rendering only: no media is read here).
    if log:
        log(f"counting the media of {len(doc_ids)} documents")
    slots = max((len(_media_parts(task, i, task.doc(i))) for i in doc_ids), default=0)
    schema = pack_schema(slots, task.name, task.spec.doc_id_column)
    batches = _Batches(task, doc_ids, slots, schema, batch_rows, batch_bytes, progress_every, log)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        lance.write_dataset(pa.RecordBatchReader.from_batches(schema, iter(batches)), str(staging))
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if batches.error is not None and batches.error is not exc:
            raise batches.error from None
        raise
    _replace(staging, out)
    return PackSummary(
        path=out,
        docs=batches.docs,
        media=batches.media,
        media_bytes=batches.media_bytes,
        slots=slots,
        unplaced=batches.unplaced,
        dropped_columns=tuple(batches.dropped),
        seconds=time.perf_counter() - start,
    )


def _replace(staging: Path, out: Path) -> None:
    if not out.exists():
        staging.rename(out)
        return
    old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
    out.rename(old)
    staging.rename(out)
    shutil.rmtree(old, ignore_errors=True)


# ---- reading -------------------------------------------------------------------------


class LanceMediaStore:
    """Random access to a dataset written by ``pack``: documents and media by row index
    (0-based) or document id, each a ``take`` of one row; blobs read only when a MediaRef's
    bytes are asked for."""

    def __init__(self, path: str | Path) -> None:
        import lance

        self.path = Path(path)
        if not self.path.is_dir():
            raise LanceError(f"{self.path}: no such Lance dataset")
        try:
            self._dataset = lance.dataset(str(self.path))
        except Exception as exc:  # noqa: BLE001 - named with the path
            raise LanceError(f"{self.path}: not a Lance dataset: {type(exc).__name__}: {exc}") from None
        metadata = self._dataset.schema.metadata or {}
        if metadata.get(b"pytest_lmms.format") != FORMAT_VERSION.encode():
            raise LanceError(
                f"{self.path}: not written by 'pytest-lmms pack' (format "
                f"{metadata.get(b'pytest_lmms.format', b'none').decode()!r}, expected {FORMAT_VERSION!r})"
            )
        self.slots = int(metadata[b"pytest_lmms.media_slots"])
        self.task = metadata.get(b"pytest_lmms.task", b"").decode()
        self._ids: list[str] | None = None
        self._rows: dict[str, int] | None = None

    def __repr__(self) -> str:
        return f"LanceMediaStore({str(self.path)!r})"

    def __len__(self) -> int:
        return int(self._dataset.count_rows())

    # ---- documents -------------------------------------------------------------------
    def doc_ids(self, limit: int | None = None) -> list[str]:
        """Every document id in row order, read from a projection of the doc_id column."""
        if self._ids is None:
            self._ids = [str(v) for v in self._dataset.to_table(columns=["doc_id"]).column(0).to_pylist()]
        return self._ids[:limit] if limit else list(self._ids)

    def row_of(self, doc_id: str) -> int:
        if self._rows is None:
            self._rows = {doc_id: row for row, doc_id in enumerate(self.doc_ids())}
        try:
            return self._rows[doc_id]
        except KeyError:
            raise KeyError(f"{self.path}: no document with id {doc_id!r}") from None

    def _row(self, doc: int | str) -> int:
        if isinstance(doc, str):
            return self.row_of(doc)
        if not 0 <= doc < len(self):
            raise IndexError(f"{self.path}: row {doc} out of range (0..{len(self) - 1})")
        return doc

    def entries(self, doc: int | str) -> list[MediaEntry]:
        """The media items recorded for a document (row index or document id)."""
        record = self._dataset.take([self._row(doc)], columns=["media"]).to_pylist()[0]
        return [MediaEntry(**entry) for entry in record["media"]]

    def media(self, doc: int | str, index: int) -> MediaRef:
        """Media item ``index`` of a document (row index or document id), as a lazy MediaRef
        whose content hash is the stored sha256."""
        row = self._row(doc)
        entries = self.entries(row)
        if not 0 <= index < len(entries):
            raise IndexError(
                f"{self.path}: document at row {row} has {len(entries)} media items, not {index + 1}"
            )
        return self._media_ref(row, index, entries[index])

    def _media_ref(self, row: int, index: int, entry: MediaEntry) -> MediaRef:
        loader: Callable[[], bytes] = partial(self.read_blob, row, index)
        return MediaRef(entry.kind, loader, content_hash=entry.sha256, mime=entry.mime)

    def read_blob(self, row: int, index: int) -> bytes:
        """The bytes of media item ``index`` of the document at ``row`` (one blob read)."""
        if not 0 <= index < self.slots:
            raise IndexError(f"{self.path}: no media slot {index} (the dataset has {self.slots})")
        blob = self._dataset.take_blobs(blob_column(index), indices=[row])[0]
        if blob is None:
            raise LanceError(f"{self.path}: the document at row {row} has no media item {index}")
        try:
            return bytes(blob.readall())
        finally:
            blob.close()

    def doc(self, doc: int | str) -> dict[str, Any]:
        """A document with its media items put back in their columns as lazy MediaRefs."""
        row = self._row(doc)
        record = self._dataset.take([row], columns=["doc", "media"]).to_pylist()[0]
        return self._document(row, record)

    def docs(self) -> list[dict[str, Any]]:
        """Every document, in row order (no blob is read)."""
        table = self._dataset.to_table(columns=["doc", "media"])
        return [self._document(row, record) for row, record in enumerate(table.to_pylist())]

    def _document(self, row: int, record: Mapping[str, Any]) -> dict[str, Any]:
        doc: dict[str, Any] = orjson.loads(record["doc"])
        for index, entry in enumerate(MediaEntry(**e) for e in record["media"]):
            if entry.column is None:
                continue
            media = self._media_ref(row, index, entry)
            if entry.position is None:
                doc[entry.column] = media
            else:
                doc[entry.column][entry.position] = media
        return doc
