"""Dataset sources: local jsonl / parquet / save_to_disk folders / folders of files, the
hub, or a Lance dataset written by ``pytest-lmms pack`` (``lance://path.lance``).

Collection calls ``ids()``, which reads only the id column; ``rows()`` loads full rows
once, when the first sample of the task runs (a Lance source takes one row per ``doc()``).
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from pytest_lmms.tasks._local import download_command, local_copy_path
from pytest_lmms.tasks._spec import DatasetError, TaskSpec, _where

if TYPE_CHECKING:
    from pytest_lmms.media._lance import LanceMediaStore

ROW_INDEX = "__row_index__"
LANCE_SCHEME = "lance://"


class Source:
    """A task's documents, addressed by id."""

    def __init__(self, spec: TaskSpec) -> None:
        self.spec = spec
        self.id_column = spec.doc_id_column
        self._rows: list[dict[str, Any]] | None = None
        self._by_id: dict[str, dict[str, Any]] | None = None

    def describe(self) -> str:
        return f"dataset_path {self.spec.dataset_path!r}"

    def _error(self, exc: BaseException) -> DatasetError:
        return DatasetError(
            f"{_where(self.spec.source_path)}: task '{self.spec.name}': {self.describe()} "
            f"cannot be loaded: {type(exc).__name__}: {exc}"
        )

    def _fail(self, problem: str) -> DatasetError:
        return DatasetError(
            f"{_where(self.spec.source_path)}: task '{self.spec.name}': {self.describe()}: {problem}"
        )

    def ids(self, limit: int | None = None) -> list[str]:
        try:
            ids = self._read_ids(limit)
        except DatasetError:
            raise
        except Exception as exc:  # noqa: BLE001 - every loader error is named the same way
            raise self._error(exc) from exc
        # A repeated id would evaluate one document twice and another never.
        seen: set[str] = set()
        for doc_id in ids:
            if doc_id in seen:
                raise self._fail(
                    f"document id {doc_id!r} appears more than once in column {self.id_column!r} "
                    "(set doc_id_column to a unique column)"
                )
            seen.add(doc_id)
        return ids

    def rows(self) -> list[dict[str, Any]]:
        if self._rows is None:
            try:
                self._rows = self._read_rows()
            except DatasetError:
                raise
            except Exception as exc:  # noqa: BLE001
                raise self._error(exc) from exc
        return self._rows

    def doc(self, doc_id: str) -> dict[str, Any]:
        if self._by_id is None:
            self._by_id = {self._id_of(row, i): row for i, row in enumerate(self.rows())}
        try:
            return self._by_id[doc_id]
        except KeyError:
            raise DatasetError(
                f"{_where(self.spec.source_path)}: task '{self.spec.name}': no document with id {doc_id!r}"
            ) from None

    def _id_of(self, row: Mapping[str, Any], index: int) -> str:
        value = row.get(self.id_column)
        return str(index) if value is None else str(value)

    def _read_ids(self, limit: int | None) -> list[str]:
        rows = self.rows()
        return [self._id_of(row, i) for i, row in enumerate(rows[:limit] if limit else rows)]

    def _read_rows(self) -> list[dict[str, Any]]:  # pragma: no cover - abstract
        raise NotImplementedError


class JsonlSource(Source):
    def __init__(self, spec: TaskSpec, path: Path) -> None:
        super().__init__(spec)
        self.path = path

    def _read_ids(self, limit: int | None) -> list[str]:
        ids: list[str] = []
        column = self.id_column
        with open(self.path, "rb") as handle:
            for index, line in enumerate(handle):
                if limit is not None and len(ids) >= limit:
                    break
                if not line.strip():
                    continue
                value = self._parse(line, index).get(column)
                ids.append(str(len(ids)) if value is None else str(value))
        return ids

    def _parse(self, line: bytes, index: int) -> dict[str, Any]:
        try:
            row = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise self._fail(f"{self.path}:{index + 1}: not valid JSON: {exc}") from None
        if not isinstance(row, dict):
            raise self._fail(f"{self.path}:{index + 1}: expected a JSON object per line")
        return row

    def _read_rows(self) -> list[dict[str, Any]]:
        with open(self.path, "rb") as handle:
            return [self._parse(line, i) for i, line in enumerate(handle) if line.strip()]


class ParquetSource(Source):
    def __init__(self, spec: TaskSpec, path: Path) -> None:
        super().__init__(spec)
        self.path = path

    def _read_ids(self, limit: int | None) -> list[str]:
        import pyarrow.parquet as pq

        file = pq.ParquetFile(self.path)
        if self.id_column not in file.schema_arrow.names:
            count = file.metadata.num_rows
            return [str(i) for i in range(min(count, limit) if limit else count)]
        table = file.read(columns=[self.id_column])
        values = table.column(0).to_pylist()
        return _ids_from(values[:limit] if limit else values)

    def _read_rows(self) -> list[dict[str, Any]]:
        import pyarrow.parquet as pq

        return pq.read_table(self.path).to_pylist()


class HFSource(Source):
    """A ``datasets`` dataset: a folder written by ``save_to_disk`` or a hub id."""

    def __init__(self, spec: TaskSpec, folder: Path | None, data_dir: Path | None = None) -> None:
        super().__init__(spec)
        self.folder = folder
        self.data_dir = data_dir
        self._dataset: Any = None

    def describe(self) -> str:
        split = self.spec.test_split
        return f"dataset_path {self.spec.dataset_path!r} (split {split!r})"

    def dataset(self) -> Any:
        if self._dataset is None:
            if self.folder is None and self.data_dir is None:
                use_offline_hub_when_unreachable()
            import datasets

            if self.folder is not None:
                loaded = datasets.load_from_disk(str(self.folder))
            elif self.data_dir is not None:
                loaded = datasets.load_from_disk(str(self._local_copy()))
            else:
                try:
                    loaded = datasets.load_dataset(
                        self.spec.dataset_path,
                        self.spec.dataset_name,
                        split=self.spec.test_split,
                        **dict(self.spec.dataset_kwargs),
                    )
                except Exception as exc:
                    reason = hub_unreachable_reason()
                    if reason is None:
                        raise
                    raise self._fail(
                        f"the Hugging Face hub is unreachable ({reason}) and the dataset is not in the "
                        f"local cache ({type(exc).__name__}); on a machine with network run "
                        f"`{download_command(self.spec)}`, then pass --lmms-data DIR here"
                    ) from exc
            if isinstance(loaded, datasets.DatasetDict):
                # "a+b" joins splits, as load_dataset(split="a+b") does on the hub
                names = self.spec.test_split.split("+")
                missing = [name for name in names if name not in loaded]
                if missing:
                    raise self._fail(f"split {missing[0]!r} not in {sorted(loaded)}")
                loaded = datasets.concatenate_datasets([loaded[name] for name in names])
            self._dataset = loaded
        return self._dataset

    def _local_copy(self) -> Path:
        assert self.data_dir is not None
        copy = local_copy_path(self.data_dir, self.spec)
        if not copy.is_dir():
            raise self._fail(
                f"no local copy in --lmms-data {self.data_dir} (looked for {copy}); on a machine with "
                f"network run `{download_command(self.spec).replace('DIR', str(self.data_dir))}`"
            )
        return copy

    def _read_ids(self, limit: int | None) -> list[str]:
        dataset = self.dataset()
        count = len(dataset) if limit is None else min(limit, len(dataset))
        if self.id_column not in dataset.column_names:
            return [str(i) for i in range(count)]
        return _ids_from(dataset.select_columns([self.id_column]).select(range(count))[self.id_column])

    def _read_rows(self) -> list[dict[str, Any]]:
        return [dict(row) for row in self.dataset()]


_HUB_PROBE: dict[str, str | None] = {}


def hub_unreachable_reason(timeout_s: float = 3.0) -> str | None:
    """Why the Hugging Face hub (``HF_ENDPOINT``) cannot be reached, or None if it can:
    one TCP connect per process, so a machine without network learns it in seconds, not
    after the hub client's retries (about 25 s per dataset)."""
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    if endpoint not in _HUB_PROBE:
        parsed = urllib.parse.urlsplit(endpoint)
        host = parsed.hostname or "huggingface.co"
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                _HUB_PROBE[endpoint] = None
        except OSError as exc:
            _HUB_PROBE[endpoint] = f"{host}:{port}: {exc or type(exc).__name__}"
    return _HUB_PROBE[endpoint]


def use_offline_hub_when_unreachable() -> None:
    """Switch the hub client to offline mode (local cache only) when the hub cannot be
    reached, unless the user set HF_HUB_OFFLINE either way."""
    if os.environ.get("HF_HUB_OFFLINE") is not None:
        return
    reason = hub_unreachable_reason()
    if reason is None:
        return
    import warnings

    warnings.warn(
        f"the Hugging Face hub is unreachable ({reason}): datasets load from the local cache only "
        "(HF_HUB_OFFLINE=1)",
        stacklevel=2,
    )
    os.environ["HF_HUB_OFFLINE"] = "1"
    # the clients read the variable at import: tell the ones already imported
    for module_name, attribute in (
        ("huggingface_hub.constants", "HF_HUB_OFFLINE"),
        ("datasets.config", "HF_HUB_OFFLINE"),
    ):
        module = sys.modules.get(module_name)
        if module is not None and hasattr(module, attribute):
            setattr(module, attribute, True)


class FolderSource(Source):
    """A folder of files: one document per file, ``{"id": relative path, "path": ...}``."""

    def __init__(self, spec: TaskSpec, folder: Path) -> None:
        super().__init__(spec)
        self.folder = folder

    def _read_rows(self) -> list[dict[str, Any]]:
        files = sorted(p for p in self.folder.rglob("*") if p.is_file() and not p.name.startswith("."))
        return [
            {"id": str(p.relative_to(self.folder).with_suffix("")), "path": str(p), "name": p.name}
            for p in files
        ]


class LanceSource(Source):
    """A dataset written by ``pytest-lmms pack``: ids from a projection of its doc_id column,
    one row taken per document, media back in their columns as lazy MediaRefs."""

    def __init__(self, spec: TaskSpec, path: Path) -> None:
        super().__init__(spec)
        self.path = path
        self._store: LanceMediaStore | None = None

    def describe(self) -> str:
        return f"dataset_path {self.spec.dataset_path!r} ({self.path})"

    def store(self) -> LanceMediaStore:
        if self._store is None:
            from pytest_lmms.media._lance import LanceMediaStore

            try:
                self._store = LanceMediaStore(self.path)
            except Exception as exc:  # noqa: BLE001 - every loader error is named the same way
                raise self._error(exc) from exc
        return self._store

    def _with_id(self, doc: dict[str, Any], doc_id: str) -> dict[str, Any]:
        # A document without an id value was numbered by its row when packed; keep that id
        # on the document, which is how a Task finds a document's id.
        if doc.get(self.id_column) is None:
            doc[self.id_column] = doc_id
        return doc

    def _read_ids(self, limit: int | None) -> list[str]:
        return self.store().doc_ids(limit)

    def _read_rows(self) -> list[dict[str, Any]]:
        store = self.store()
        return [self._with_id(doc, i) for doc, i in zip(store.docs(), store.doc_ids(), strict=True)]

    def doc(self, doc_id: str) -> dict[str, Any]:
        store = self.store()
        try:
            row = store.row_of(doc_id)
        except KeyError:
            raise DatasetError(
                f"{_where(self.spec.source_path)}: task '{self.spec.name}': no document with id {doc_id!r}"
            ) from None
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc) from exc
        try:
            return self._with_id(store.doc(row), doc_id)
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc) from exc


def _ids_from(values: Any) -> list[str]:
    # The same rule as Source._id_of: a missing id is the row index.
    return [str(i) if v is None else str(v) for i, v in enumerate(values)]


def lance_path(folder: Path, raw: str) -> Path:
    """The folder a ``lance://`` dataset_path names, relative to the YAML's ``folder``."""
    path = Path(raw[len(LANCE_SCHEME) :]).expanduser()
    return path if path.is_absolute() else folder / path


def open_source(spec: TaskSpec, data_dir: Path | None = None) -> Source:
    """The source of a task's documents; ``data_dir`` holds local copies of hub datasets."""
    raw = spec.dataset_path or ""
    if raw.startswith(LANCE_SCHEME):
        dataset = lance_path(spec.folder, raw)
        if not dataset.is_dir():
            raise DatasetError(
                f"{_where(spec.source_path)}: task '{spec.name}': dataset_path {raw!r}: "
                f"no such Lance dataset {dataset}"
            )
        return LanceSource(spec, dataset)
    path = Path(raw).expanduser()
    if not path.is_absolute():
        path = spec.folder / path
    if raw.endswith(".jsonl") or raw.endswith(".json"):
        if not path.is_file():
            raise DatasetError(
                f"{_where(spec.source_path)}: task '{spec.name}': dataset_path {raw!r}: no such file {path}"
            )
        return JsonlSource(spec, path)
    if raw.endswith(".parquet"):
        if not path.is_file():
            raise DatasetError(
                f"{_where(spec.source_path)}: task '{spec.name}': dataset_path {raw!r}: no such file {path}"
            )
        return ParquetSource(spec, path)
    if path.is_dir():
        if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
            return HFSource(spec, path)
        return FolderSource(spec, path)
    if raw.startswith((".", "/", "~")):
        raise DatasetError(
            f"{_where(spec.source_path)}: task '{spec.name}': dataset_path {raw!r}: no such path {path}"
        )
    return HFSource(spec, None, data_dir)
