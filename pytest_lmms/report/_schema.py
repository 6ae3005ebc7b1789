"""results.json and samples lines in and out through the typed records, and the JSON Schema.

One codec walks the dataclass fields of ``_records`` (and ``SampleResult``): ``encode``
gives the JSON layout, ``decode`` checks each value against its field's type and names the
field that is wrong, and ``json_schema`` publishes the same types as JSON Schema (draft
2020-12). ``pytest_lmms/schema/*.schema.json`` are generated from here and checked in.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import orjson

from pytest_lmms.report._records import READABLE_SCHEMA_VERSIONS, RESULTS_SCHEMA_VERSION, RunResults
from pytest_lmms.types import SampleResult

T = TypeVar("T")
SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schema"
DRAFT = "https://json-schema.org/draft/2020-12/schema"


class ResultsSchemaError(ValueError):
    """A results.json (or sample line) that does not fit the schema; names the file and field."""


# ---- encoding ---------------------------------------------------------------------------


def encode(value: Any) -> Any:
    """A record (or any value holding records) as plain JSON data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        own = getattr(value, "to_json", None)
        if own is not None:  # SampleResult and Estimate write themselves (the per-sample hot path)
            return own()
        out: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            if f.metadata.get("omit") and item == _default_of(f):
                continue
            out[f.name] = encode(item)
        return out
    if isinstance(value, Mapping):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    return value


def _default_of(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


# ---- decoding ---------------------------------------------------------------------------


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def decode(cls: type[T], data: Any, where: str = "") -> T:
    """``data`` (parsed JSON) as a ``cls`` record; ResultsSchemaError naming the field
    (``tasks.mme.metrics.accuracy.n``) that is missing or of the wrong type. Keys the
    record does not know are ignored, so a reader tolerates what a newer writer adds."""
    if not isinstance(data, Mapping):
        raise ResultsSchemaError(f"{where or 'document'}: expected an object, got {_kind(data)}")
    if cls is SampleResult:
        try:
            return typing.cast(T, SampleResult.from_json(data))
        except (KeyError, TypeError, ValueError) as exc:
            raise ResultsSchemaError(f"{where or 'sample'}: not a sample record: {exc}") from None
    hints = _hints(typing.cast(Any, cls))
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        path = f"{where}.{f.name}" if where else f.name
        if f.name in data:
            values[f.name] = _decode_value(hints[f.name], data[f.name], path)
        elif _default_of(f) is dataclasses.MISSING:
            raise ResultsSchemaError(f"{path}: missing")
    return cls(**values)


def _decode_value(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _decode_value(option, value, where)
            except ResultsSchemaError as exc:
                errors.append(str(exc))
        raise ResultsSchemaError(errors[0] if len(errors) == 1 else f"{where}: {_kind(value)} fits no option")
    if dataclasses.is_dataclass(hint):
        return decode(typing.cast(type, hint), value, where)
    if origin in (Mapping, dict):
        if not isinstance(value, Mapping):
            raise ResultsSchemaError(f"{where}: expected an object, got {_kind(value)}")
        _, item = typing.get_args(hint)
        return {str(k): _decode_value(item, v, f"{where}.{k}") for k, v in value.items()}
    if origin is tuple:
        if not isinstance(value, list):
            raise ResultsSchemaError(f"{where}: expected an array, got {_kind(value)}")
        item = typing.get_args(hint)[0]
        return tuple(_decode_value(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin is Literal:
        if value not in typing.get_args(hint):
            raise ResultsSchemaError(f"{where}: {value!r} is not one of {typing.get_args(hint)}")
        return value
    return _decode_scalar(hint, value, where)


def _decode_scalar(hint: Any, value: Any, where: str) -> Any:
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif hint is str:
        ok = isinstance(value, str)
    else:  # pragma: no cover - a record field of a type the codec does not know
        raise TypeError(f"{where}: no JSON form for {hint!r}")
    if not ok:
        raise ResultsSchemaError(f"{where}: expected {hint.__name__}, got {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    return "null" if value is None else f"{type(value).__name__} {value!r:.60}"


# ---- results.json -----------------------------------------------------------------------


def results_from_json(data: Any, source: str = "results.json") -> RunResults:
    """A parsed results.json of any readable schema version as RunResults."""
    if not isinstance(data, Mapping) or "tasks" not in data:
        raise ResultsSchemaError(f"{source}: not a pytest-lmms results.json (no 'tasks')")
    version = data.get("schema_version", 1)
    if not isinstance(version, int) or isinstance(version, bool):
        raise ResultsSchemaError(f"{source}: schema_version {version!r} is not a number")
    if version > max(READABLE_SCHEMA_VERSIONS):
        raise ResultsSchemaError(
            f"{source}: schema_version {version} is newer than this pytest-lmms reads "
            f"(up to {max(READABLE_SCHEMA_VERSIONS)}): upgrade pytest-lmms to read it"
        )
    if version not in READABLE_SCHEMA_VERSIONS:
        raise ResultsSchemaError(
            f"{source}: schema_version {version} is not one this pytest-lmms reads "
            f"({', '.join(map(str, READABLE_SCHEMA_VERSIONS))})"
        )
    # version 1 has the same keys (a failed comparison lacked its statistics, which default
    # to None), so one decoder reads both
    try:
        return decode(RunResults, data)
    except ResultsSchemaError as exc:
        raise ResultsSchemaError(f"{source}: {exc}") from None


def read_results(path: str | Path) -> RunResults:
    """``results.json`` (or the run folder holding one) as RunResults; a ValueError
    naming the file when it cannot be read, is not JSON, or does not fit the schema."""
    path = results_path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ResultsSchemaError(f"{path}: cannot read: {exc}") from None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ResultsSchemaError(f"{path}: not a results.json: {exc}") from None
    return results_from_json(data, str(path))


def results_path(path: str | Path) -> Path:
    path = Path(path)
    return path / "results.json" if path.is_dir() else path


def write_results(path: str | Path, results: RunResults | Mapping[str, Any]) -> Path:
    """Write results.json atomically (a reader never sees half a file). A mapping is read
    through the schema first, so nothing untyped reaches the file."""
    record = results if isinstance(results, RunResults) else results_from_json(results, str(path))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_bytes(orjson.dumps(encode(record), option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    os.replace(tmp, path)
    return path


def write_samples(path: str | Path, samples: Sequence[SampleResult]) -> Path:
    """A whole samples file at once (merged runs); a running session appends through
    SamplesWriter instead, one flushed line per sample."""
    path = Path(path)
    path.write_bytes(b"".join(orjson.dumps(sample.to_json()) + b"\n" for sample in samples))
    return path


# ---- JSON Schema ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class MediaRecord:
    """One medium of a prompt, as a sample line records it."""

    kind: Literal["image", "video", "audio"]
    path: str | None = dataclasses.field(metadata={"doc": "None for media held in memory"})
    sha256: str
    sampling: Mapping[str, Any] | None = dataclasses.field(default=None, metadata={"omit": True})


@dataclasses.dataclass(frozen=True, kw_only=True)
class PromptRecord:
    """What the model was shown: the prompt text, each medium, the choices."""

    text: str
    media: tuple[MediaRecord, ...]
    choices: tuple[str, ...] | None


# Schema-only refinements of fields the record types keep loose (a sample's prompt is the
# mapping prompt_record() builds), and the version a written file carries.
_FIELD_SCHEMA: dict[tuple[type, str], Any] = {
    (SampleResult, "prompt"): PromptRecord | None,
    (SampleResult, "judge_log"): tuple[Mapping[str, str], ...],
}
_FIELD_OVERRIDE: dict[tuple[type, str], dict[str, Any]] = {
    (RunResults, "schema_version"): {"const": RESULTS_SCHEMA_VERSION},
}


def results_json_schema() -> dict[str, Any]:
    return _document_schema(RunResults, "pytest-lmms results.json")


def samples_json_schema() -> dict[str, Any]:
    """One line of a samples_<task>.jsonl file (its version is the results.json's)."""
    return _document_schema(SampleResult, "pytest-lmms sample line")


def _document_schema(cls: type, title: str) -> dict[str, Any]:
    defs: dict[str, Any] = {}
    root = _schema_of(cls, defs)
    return {
        "$schema": DRAFT,
        "title": title,
        "description": f"schema_version {RESULTS_SCHEMA_VERSION}; generated from pytest_lmms.report._records",
        **root,
        "$defs": dict(sorted(defs.items())),
    }


def _schema_of(hint: Any, defs: dict[str, Any]) -> dict[str, Any]:
    origin = typing.get_origin(hint)
    if hint is Any:
        return {}
    if origin in (Union, types.UnionType):
        options = [_schema_of(option, defs) for option in typing.get_args(hint)]
        if all(set(o) == {"type"} for o in options):  # scalars or null: one "type" list
            return {"type": [o["type"] for o in options]}
        return {"anyOf": options}
    if hint is type(None):
        return {"type": "null"}
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        name = hint.__name__
        if name not in defs:
            defs[name] = {}  # placeholder: a record may (in future) refer to itself
            defs[name] = _record_schema(typing.cast(type, hint), defs)
        return {"$ref": f"#/$defs/{name}"}
    if origin in (Mapping, dict):
        _, item = typing.get_args(hint)
        return {"type": "object", "additionalProperties": _schema_of(item, defs)}
    if origin is tuple:
        return {"type": "array", "items": _schema_of(typing.get_args(hint)[0], defs)}
    if origin is Literal:
        return {"enum": list(typing.get_args(hint))}
    scalars = {bool: "boolean", int: "integer", float: "number", str: "string"}
    return {"type": scalars[hint]}


def _record_schema(cls: type, defs: dict[str, Any]) -> dict[str, Any]:
    hints = _hints(cls)
    properties: dict[str, Any] = {}
    required = []
    for f in dataclasses.fields(cls):
        hint = _FIELD_SCHEMA.get((cls, f.name), hints[f.name])
        prop = _FIELD_OVERRIDE.get((cls, f.name)) or _schema_of(hint, defs)
        if f.metadata.get("doc"):
            prop = {**prop, "description": f.metadata["doc"]}
        properties[f.name] = prop
        if not f.metadata.get("omit"):
            required.append(f.name)  # the writer always writes it (null when unknown)
    out: dict[str, Any] = {"type": "object"}
    if cls.__doc__ and not cls.__doc__.startswith(cls.__name__ + "("):
        out["description"] = " ".join(cls.__doc__.split())
    out.update(properties=properties, required=required, additionalProperties=False)
    return out


def schema_files() -> dict[str, dict[str, Any]]:
    """The checked-in schema files, by name, as generated from the types now."""
    return {"results.schema.json": results_json_schema(), "samples.schema.json": samples_json_schema()}


def write_schema_files(folder: Path = SCHEMA_DIR) -> list[Path]:
    """Regenerate ``pytest_lmms/schema/``: ``python -c "from pytest_lmms.report._schema
    import write_schema_files; write_schema_files()"``."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in schema_files().items():
        target = folder / name
        target.write_bytes(orjson.dumps(schema, option=orjson.OPT_INDENT_2) + b"\n")
        written.append(target)
    return written


__all__ = [
    "RESULTS_SCHEMA_VERSION",
    "ResultsSchemaError",
    "decode",
    "encode",
    "read_results",
    "results_from_json",
    "results_json_schema",
    "samples_json_schema",
    "write_results",
    "write_samples",
]
