"""Task YAML: parsing (with ``!function`` and ``include``) and validation into TaskSpec."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pytest_lmms.types import GenParams


class TaskConfigError(ValueError):
    """A task definition that cannot be used; the message names the file and the field."""


class DatasetError(RuntimeError):
    """A dataset that cannot be loaded; the message names the YAML file and the source."""


@dataclass(frozen=True)
class FunctionRef:
    """``!function module.attr``: resolved from the folder of the YAML that wrote it."""

    module: str
    attr: str
    folder: Path

    def __str__(self) -> str:
        return f"{self.module}.{self.attr}"


@dataclass(frozen=True)
class MetricSpec:
    name: str
    aggregation: str | FunctionRef = "mean"
    higher_is_better: bool = True
    kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskSpec:
    name: str
    source_path: Path
    raw: Mapping[str, Any]
    tags: tuple[str, ...] = ()
    dataset_path: str | None = None
    dataset_name: str | None = None
    dataset_kwargs: Mapping[str, Any] = field(default_factory=dict)
    test_split: str = "test"
    doc_id_column: str = "id"
    doc_to_messages: FunctionRef | None = None
    doc_to_text: str | FunctionRef | None = None
    doc_to_visual: str | FunctionRef | None = None
    doc_to_target: str | FunctionRef | None = None
    doc_to_choice: str | list[str] | FunctionRef | None = None
    process_results: FunctionRef | None = None
    generation: GenParams = GenParams()
    metrics: tuple[MetricSpec, ...] = ()
    cluster_key: str | FunctionRef | None = None
    reasoning_tags: Any = None
    submission: FunctionRef | None = None
    output_type: str = "generate_until"
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        return self.source_path.parent


@dataclass(frozen=True)
class GroupSpec:
    name: str
    tasks: tuple[str, ...]
    source_path: Path


TASK_FIELDS = {
    "task",
    "tags",
    "include",
    "dataset_path",
    "dataset_name",
    "dataset_kwargs",
    "test_split",
    "doc_id_column",
    "doc_to_messages",
    "doc_to_text",
    "doc_to_visual",
    "doc_to_target",
    "doc_to_choice",
    "process_results",
    "generation_kwargs",
    "metric_list",
    "cluster_key",
    "reasoning_tags",
    "submission",
    "output_type",
    "metadata",
    "description",
    "group_alias",
    "tag",
}
GROUP_FIELDS = {"group", "task", "group_alias", "metadata", "description"}
GEN_FIELDS = {"max_new_tokens", "temperature", "top_p", "until", "stop", "do_sample", "seed"}
METRIC_FIELDS = {"metric", "aggregation", "higher_is_better"}
OUTPUT_TYPES = {
    "generate_until": "generate",
    "loglikelihood": "loglikelihood",
    "multiple_choice": "loglikelihood",
}


class _Loader(yaml.SafeLoader):
    """SafeLoader plus ``!function``; the YAML's folder is attached per file."""

    folder: Path


def _function_constructor(loader: _Loader, node: yaml.Node) -> FunctionRef:
    value = loader.construct_scalar(node)  # type: ignore[arg-type]
    module, dot, attr = str(value).rpartition(".")
    if not dot or not module or not attr:
        mark = node.start_mark
        raise TaskConfigError(f"line {mark.line + 1}: !function expects module.attr, got {value!r}")
    return FunctionRef(module=module, attr=attr, folder=loader.folder)


_Loader.add_constructor("!function", _function_constructor)


def _where(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def read_yaml_documents(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TaskConfigError(f"{_where(path)}: cannot read: {exc}") from None

    def make_loader(stream: str) -> _Loader:
        loader = _Loader(stream)
        loader.folder = path.parent
        return loader

    documents: list[dict[str, Any]] = []
    try:
        loader = make_loader(text)
        try:
            while loader.check_data():
                documents.append(loader.get_data())
        finally:
            loader.dispose()
    except TaskConfigError as exc:
        raise TaskConfigError(f"{_where(path)}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise TaskConfigError(f"{_where(path)}:{where}: invalid YAML: {problem}") from None
    out = []
    for number, doc in enumerate(documents, 1):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise TaskConfigError(
                f"{_where(path)}: document {number} is a {type(doc).__name__}, expected a mapping"
            )
        out.append(doc)
    return out


def _with_includes(raw: dict[str, Any], path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    include = raw.get("include")
    if include is None:
        return raw
    if not isinstance(include, str):
        raise TaskConfigError(f"{_where(path)}: field 'include': expected a file name, got {include!r}")
    include, _, wanted = include.partition("::")
    base_path = (path.parent / include).resolve()
    if base_path in seen:
        chain = " -> ".join(_where(p) for p in (*seen, base_path))
        raise TaskConfigError(f"{_where(path)}: field 'include': include cycle {chain}")
    if not base_path.is_file():
        raise TaskConfigError(f"{_where(path)}: field 'include': file {include!r} not found")
    documents = read_yaml_documents(base_path)
    if wanted:  # file.yaml::task picks one task of a file holding several
        documents = [d for d in documents if isinstance(d, dict) and d.get("task") == wanted]
        if len(documents) != 1:
            raise TaskConfigError(f"{_where(path)}: field 'include': no task {wanted!r} in {include!r}")
    elif len(documents) != 1:
        raise TaskConfigError(
            f"{_where(path)}: field 'include': {include!r} holds several YAML documents; "
            f"name one as {include}::TASK"
        )
    base = _with_includes(documents[0], base_path, (*seen, base_path))
    merged = {**base, **{k: v for k, v in raw.items() if k != "include"}}
    merged.pop("include", None)
    return merged


def _check_fields(raw: Mapping[str, Any], known: set[str], where: str) -> None:
    for key in raw:
        if key not in known:
            close = difflib.get_close_matches(str(key), sorted(known), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise TaskConfigError(f"{where}: unknown field '{key}'{hint}")


def _typed(raw: Mapping[str, Any], key: str, kinds: tuple[type, ...], where: str) -> Any:
    value = raw.get(key)
    if value is not None and not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise TaskConfigError(
            f"{where}: field '{key}': expected {names}, got {type(value).__name__} {value!r:.60}"
        )
    return value


def _generation(raw: Any, where: str) -> GenParams:
    if raw is None:
        return GenParams()
    if not isinstance(raw, Mapping):
        raise TaskConfigError(f"{where}: field 'generation_kwargs': expected a mapping")
    for key in raw:
        if key not in GEN_FIELDS:
            raise TaskConfigError(
                f"{where}: field 'generation_kwargs': unknown key '{key}'; known: {', '.join(sorted(GEN_FIELDS))}"
            )
    stop = raw.get("until", raw.get("stop", ()))
    if isinstance(stop, str):
        stop = (stop,)
    # GenParams has slots: its class attributes are descriptors, so read defaults from an instance.
    default = GenParams()
    try:
        temperature = float(raw.get("temperature", default.temperature))
        if raw.get("do_sample") is False:
            temperature = 0.0
        return GenParams(
            max_new_tokens=int(raw.get("max_new_tokens", default.max_new_tokens)),
            temperature=temperature,
            top_p=float(raw.get("top_p", default.top_p)),
            stop=tuple(stop or ()),
            seed=None if raw.get("seed") is None else int(raw["seed"]),
        )
    except (TypeError, ValueError) as exc:
        raise TaskConfigError(f"{where}: field 'generation_kwargs': {exc}") from None


def _metrics(raw: Any, where: str) -> tuple[MetricSpec, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise TaskConfigError(f"{where}: field 'metric_list': expected a list of {{metric: ...}} entries")
    out = []
    for index, entry in enumerate(raw):
        if isinstance(entry, str):
            entry = {"metric": entry}
        if not isinstance(entry, Mapping) or not isinstance(entry.get("metric"), str):
            raise TaskConfigError(
                f"{where}: field 'metric_list[{index}]': expected a mapping with a 'metric' name"
            )
        aggregation = entry.get("aggregation", "mean")
        if not isinstance(aggregation, (str, FunctionRef)):
            raise TaskConfigError(
                f"{where}: field 'metric_list[{index}].aggregation': expected a name or !function"
            )
        higher = entry.get("higher_is_better", True)
        if not isinstance(higher, bool):
            raise TaskConfigError(
                f"{where}: field 'metric_list[{index}].higher_is_better': expected true or false"
            )
        kwargs = {k: v for k, v in entry.items() if k not in METRIC_FIELDS}
        out.append(MetricSpec(entry["metric"], aggregation, higher, kwargs))
    return tuple(out)


def _reasoning_tags(value: Any) -> Any:
    # YAML reads a bare off / false / no as False (and on / true / yes as True).
    if isinstance(value, bool):
        return None if value else "off"
    return value


def _spec_from(raw: dict[str, Any], path: Path) -> TaskSpec | GroupSpec:
    if "group" in raw:
        where = f"{_where(path)}: group {raw.get('group')!r}"
        _check_fields(raw, GROUP_FIELDS, where)
        members = raw.get("task") or []
        if isinstance(members, str):
            members = [members]
        if (
            not isinstance(raw["group"], str)
            or not isinstance(members, list)
            or not all(isinstance(m, str) for m in members)
        ):
            raise TaskConfigError(f"{where}: field 'task': a group lists task or group names")
        return GroupSpec(name=raw["group"], tasks=tuple(members), source_path=path)
    raw = _with_includes(raw, path, (path.resolve(),))
    name = raw.get("task")
    if not isinstance(name, str) or not name:
        raise TaskConfigError(f"{_where(path)}: field 'task': required, the task's name")
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
        raise TaskConfigError(f"{_where(path)}: field 'task': {name!r} may only use letters, digits, _ . -")
    where = f"{_where(path)}: task '{name}'"
    _check_fields(raw, TASK_FIELDS, where)
    text_or_fn = (str, FunctionRef)
    output_type = _typed(raw, "output_type", (str,), where) or "generate_until"
    if output_type not in OUTPUT_TYPES:
        raise TaskConfigError(
            f"{where}: field 'output_type': one of {sorted(OUTPUT_TYPES)}, got {output_type!r}"
        )
    if raw.get("doc_to_messages") is None and raw.get("doc_to_text") is None:
        raise TaskConfigError(f"{where}: field 'doc_to_text': required (or doc_to_messages)")
    if raw.get("dataset_path") is None:
        raise TaskConfigError(f"{where}: field 'dataset_path': required")
    tags = _typed(raw, "tags", (list, str), where) or []
    return TaskSpec(
        name=name,
        source_path=path,
        raw=raw,
        tags=tuple([tags] if isinstance(tags, str) else [str(t) for t in tags]),
        dataset_path=str(_typed(raw, "dataset_path", (str,), where)),
        dataset_name=_typed(raw, "dataset_name", (str,), where),
        dataset_kwargs=_typed(raw, "dataset_kwargs", (dict,), where) or {},
        test_split=_typed(raw, "test_split", (str,), where) or "test",
        doc_id_column=_typed(raw, "doc_id_column", (str,), where) or "id",
        doc_to_messages=_typed(raw, "doc_to_messages", (FunctionRef,), where),
        doc_to_text=_typed(raw, "doc_to_text", text_or_fn, where),
        doc_to_visual=_typed(raw, "doc_to_visual", text_or_fn, where),
        doc_to_target=_typed(raw, "doc_to_target", (*text_or_fn, int, float, list), where),
        doc_to_choice=_typed(raw, "doc_to_choice", (*text_or_fn, list), where),
        process_results=_typed(raw, "process_results", (FunctionRef,), where),
        generation=_generation(raw.get("generation_kwargs"), where),
        metrics=_metrics(raw.get("metric_list"), where),
        cluster_key=_typed(raw, "cluster_key", (str, FunctionRef), where),
        reasoning_tags=_reasoning_tags(raw.get("reasoning_tags")),
        submission=_typed(raw, "submission", (FunctionRef,), where),
        output_type=output_type,
        metadata=_typed(raw, "metadata", (dict,), where) or {},
    )


def load_specs(path: str | Path) -> list[TaskSpec | GroupSpec]:
    """Every task and group defined in one YAML file (one per YAML document)."""
    path = Path(path)
    specs = [_spec_from(raw, path) for raw in read_yaml_documents(path)]
    if not specs:
        raise TaskConfigError(f"{_where(path)}: no task or group defined")
    return specs


_TASK_KEY = re.compile(r"^(task|group)\s*:", re.MULTILINE)


def is_task_file(path: Path) -> bool:
    """Cheap check for the collector: a .yaml/.yml not starting with '_' with a task/group key."""
    if path.suffix not in (".yaml", ".yml") or path.name.startswith(("_", ".")):
        return False
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            head = handle.read(65536)
    except OSError:
        return False
    return bool(_TASK_KEY.search(head))
