"""Task: a validated spec with its functions resolved and its dataset source."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import inspect
import io
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from pytest_lmms.tasks._likelihood import AGGREGATIONS as LIKELIHOOD_AGGREGATIONS
from pytest_lmms.tasks._likelihood import DEFAULT_METRICS as LIKELIHOOD_DEFAULT_METRICS
from pytest_lmms.tasks._likelihood import LIKELIHOOD_METRICS
from pytest_lmms.tasks._likelihood import LOWER_IS_BETTER as LIKELIHOOD_LOWER_IS_BETTER
from pytest_lmms.tasks._sources import Source, open_source
from pytest_lmms.tasks._spec import OUTPUT_TYPES, FunctionRef, MetricSpec, TaskConfigError, TaskSpec, _where
from pytest_lmms.types import (
    ContentPart,
    Estimate,
    GenParams,
    MediaPart,
    MediaRef,
    Message,
    Request,
    SampleResult,
    TextPart,
    VideoSampling,
)

# file -> ((mtime_ns, size), module): an edited file is imported again (in-process evaluate()).
_MODULES: dict[Path, tuple[tuple[int, int], ModuleType]] = {}
_TEMPLATE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.]*)\s*\}\}")


def _module_from(folder: Path, module: str) -> ModuleType:
    file = (folder / Path(*module.split("."))).with_suffix(".py").resolve()
    if not file.is_file():
        raise FileNotFoundError(f"no module file {file}")
    stat = file.stat()
    version = (stat.st_mtime_ns, stat.st_size)
    cached = _MODULES.get(file)
    if cached is not None and cached[0] == version:
        return cached[1]
    # A unique name per file: two benchmark folders may each have a utils.py.
    name = f"pytest_lmms_tasks_{hashlib.sha1(str(file).encode()).hexdigest()[:12]}_{file.stem}"
    spec = importlib.util.spec_from_file_location(name, file)
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[name] = loaded
    try:
        spec.loader.exec_module(loaded)
    except BaseException:
        del sys.modules[name]
        raise
    _MODULES[file] = (version, loaded)
    return loaded


def resolve_function(ref: FunctionRef, where: str, field: str) -> Callable[..., Any]:
    try:
        module = _module_from(ref.folder, ref.module)
    except Exception as exc:  # noqa: BLE001 - named with file and field
        raise TaskConfigError(
            f"{where}: field '{field}': cannot import {ref.module} from {ref.folder}: {exc}"
        ) from None
    function = getattr(module, ref.attr, None)
    if not callable(function):
        raise TaskConfigError(f"{where}: field '{field}': function {ref} not found in {module.__file__}")
    return function  # type: ignore[no-any-return]


def render_template(template: str, doc: Mapping[str, Any]) -> str:
    def value(match: re.Match[str]) -> str:
        current: Any = doc
        for part in match.group(1).split("."):
            if not isinstance(current, Mapping) or part not in current:
                raise KeyError(f"template field {match.group(1)!r} is not in the document")
            current = current[part]
        return str(current)

    return _TEMPLATE.sub(value, template)


def _png_loader(image: Any) -> Callable[[], bytes]:
    def encode() -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()

    return encode


def to_media(value: Any, kind: str, folder: Path) -> MediaRef:
    """A MediaRef from what datasets and task functions hand out."""
    if isinstance(value, MediaRef):
        return value
    if isinstance(value, (bytes, bytearray)):
        return MediaRef(kind, bytes(value))  # type: ignore[arg-type]
    if kind != "image":  # audio / video cells that ``datasets`` decoded already
        from pytest_lmms.media import decoded_cell_bytes

        decoded = decoded_cell_bytes(value)
        if decoded is not None:
            return MediaRef(kind, decoded)  # type: ignore[arg-type]
    if isinstance(value, Mapping):  # HF Image/Audio columns: {"bytes": ..., "path": ...}
        if value.get("bytes"):
            return MediaRef(kind, bytes(value["bytes"]))  # type: ignore[arg-type]
        if value.get("path"):
            return to_media(value["path"], kind, folder)
    if isinstance(value, (str, Path)):
        path = Path(value).expanduser()
        return MediaRef(kind, path if path.is_absolute() else folder / path)  # type: ignore[arg-type]
    if hasattr(value, "save") and hasattr(value, "mode"):  # a PIL image
        return MediaRef(kind, _png_loader(value), mime="image/png")  # type: ignore[arg-type]
    raise TypeError(f"cannot use a {type(value).__name__} as {kind} media")


class Task:
    """One benchmark task: documents, prompts, targets, scoring and aggregation."""

    def __init__(self, spec: TaskSpec, data_dir: str | Path | None = None) -> None:
        """``data_dir``: a folder of local copies (``pytest-lmms download``); a hub dataset
        is then read from its copy there, never from the hub."""
        self.spec = spec
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.name = spec.name
        self.path = spec.source_path
        where = f"{_where(spec.source_path)}: task '{spec.name}'"
        self._where = where
        self._functions: dict[str, Callable[..., Any]] = {}
        for field in (
            "doc_to_messages",
            "doc_to_text",
            "doc_to_visual",
            "doc_to_target",
            "doc_to_choice",
            "process_results",
            "cluster_key",
            "submission",
        ):
            value = getattr(spec, field)
            if isinstance(value, FunctionRef):
                self._functions[field] = resolve_function(value, where, field)
        self._metric_functions: dict[str, Callable[..., float]] = {}
        likelihood = OUTPUT_TYPES[spec.output_type] == "loglikelihood"
        if spec.process_results is None:
            from pytest_lmms.scoring import get_metric

            for index, metric in enumerate(spec.metrics):
                if likelihood and metric.name in LIKELIHOOD_METRICS:
                    continue  # computed from the options' log-probabilities (tasks/_likelihood.py)
                try:
                    self._metric_functions[metric.name] = get_metric(metric.name)
                except (KeyError, ValueError) as exc:
                    raise TaskConfigError(f"{where}: field 'metric_list[{index}].metric': {exc}") from None
        self._aggregations: dict[str, Callable[..., Any]] = {}
        if spec.output_type == "loglikelihood":
            # corpus perplexities are not means: their own aggregation, bootstrap intervals
            self._aggregations.update(LIKELIHOOD_AGGREGATIONS)
        for index, metric in enumerate(spec.metrics):
            if isinstance(metric.aggregation, FunctionRef):
                self._aggregations[metric.name] = resolve_function(
                    metric.aggregation, where, f"metric_list[{index}].aggregation"
                )
            elif metric.aggregation != "mean":
                raise TaskConfigError(
                    f"{where}: field 'metric_list[{index}].aggregation': 'mean' or a !function, "
                    f"got {metric.aggregation!r}"
                )
        from pytest_lmms.scoring import DEFAULT_REASONING_TAGS, parse_reasoning_tags

        try:
            self.reasoning_tags: tuple[tuple[str, str], ...] = (
                DEFAULT_REASONING_TAGS
                if spec.reasoning_tags is None
                else parse_reasoning_tags(spec.reasoning_tags)
            )
        except ValueError as exc:
            raise TaskConfigError(f"{where}: field 'reasoning_tags': {exc}") from None
        # Optional keyword arguments of the task's functions, read once (not per sample).
        # Whether process_results takes a ``judge`` (an LLM judge, or None):
        self.uses_judge = _takes(self._functions.get("process_results"), "judge")
        self._messages_take_metadata = _takes(self._functions.get("doc_to_messages"), "metadata")
        self._source: Source | None = None
        # Now, not on first use: the sources read must be the ones just imported, even if a
        # utils.py is edited while a run is going on.
        self.fingerprint: str = self._fingerprint()

    def __repr__(self) -> str:
        return f"Task({self.name!r}, {_where(self.path)})"

    # ---- documents ---------------------------------------------------------------------
    @property
    def source(self) -> Source:
        if self._source is None:
            self._source = open_source(self.spec, self.data_dir)
        return self._source

    def doc_ids(self, limit: int | None = None) -> list[str]:
        return self.source.ids(limit)

    def docs(self) -> Iterator[dict[str, Any]]:
        yield from self.source.rows()

    def doc(self, doc_id: str) -> dict[str, Any]:
        return self.source.doc(str(doc_id))

    def doc_id_of(self, doc: Mapping[str, Any]) -> str:
        value = doc.get(self.spec.doc_id_column)
        if value is None:
            rows = self.source.rows()
            for index, row in enumerate(rows):
                if row is doc:
                    return str(index)
            return "?"
        return str(value)

    # ---- prompt ------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        """The request kind of the task's samples ("generate", "loglikelihood", ...)."""
        return OUTPUT_TYPES[self.spec.output_type]

    @property
    def generation(self) -> GenParams:
        return self.spec.generation

    def _field(self, name: str, doc: Mapping[str, Any]) -> Any:
        function = self._functions.get(name)
        if function is not None:
            return function(doc)
        value = getattr(self.spec, name)
        if isinstance(value, str):
            return doc[value] if value in doc else render_template(value, doc)
        return value

    def target(self, doc: Mapping[str, Any]) -> Any:
        return self._field("doc_to_target", doc)

    def choices(self, doc: Mapping[str, Any]) -> list[str] | None:
        if self.spec.doc_to_choice is None:
            return None
        value = self._field("doc_to_choice", doc)
        if isinstance(value, str):
            raise TypeError(f"doc_to_choice gave a string {value!r:.60}, expected a list")
        return [str(c) for c in value]

    def cluster_id(self, doc: Mapping[str, Any]) -> str | None:
        """The document's cluster: a column's value, or what a ``!function`` computes."""
        key = self.spec.cluster_key
        if key is None:
            return None
        function = self._functions.get("cluster_key")
        if function is not None:
            return str(function(doc))
        assert isinstance(key, str)
        if key not in doc:
            raise KeyError(f"cluster_key {key!r} is not a field of document {self.doc_id_of(doc)!r}")
        return str(doc[key])

    def messages(self, doc: Mapping[str, Any]) -> tuple[Message, ...]:
        function = self._functions.get("doc_to_messages")
        if function is not None:
            if self._messages_take_metadata:  # the YAML's metadata: frame counts, media folders
                built = function(doc, metadata=dict(self.spec.metadata))
            else:
                built = function(doc)
            return tuple(self._message(m) for m in built)
        parts: list[ContentPart] = []
        if self.spec.doc_to_visual is not None:
            visuals = self._field("doc_to_visual", doc)
            if visuals is None:
                visuals = []
            elif not isinstance(visuals, (list, tuple)):
                visuals = [visuals]
            parts += [MediaPart(to_media(v, "image", self.spec.folder), "image") for v in visuals]
        parts.append(TextPart(str(self._field("doc_to_text", doc))))
        return (Message("user", tuple(parts)),)

    def _message(self, message: Any) -> Message:
        if isinstance(message, Message):
            return message
        if not isinstance(message, Mapping) or "role" not in message:
            raise TypeError(
                f"doc_to_messages returned {type(message).__name__}, expected {{'role', 'content'}}"
            )
        content = message.get("content", "")
        if isinstance(content, str):
            return Message(message["role"], (TextPart(content),))
        parts: list[ContentPart] = []
        for part in content:
            if isinstance(part, (TextPart, MediaPart)):
                parts.append(part)
                continue
            kind = part.get("type")
            if kind == "text":
                parts.append(TextPart(str(part["text"])))
            elif kind in ("image", "video", "audio"):
                value = part.get(kind, part.get("media", part.get("url")))
                sampling = part.get("sampling")
                if sampling is not None and kind != "video":
                    raise TypeError(f"a {kind} part cannot have a 'sampling'; only videos do")
                if isinstance(sampling, Mapping):
                    sampling = VideoSampling.from_dict(sampling)
                parts.append(MediaPart(to_media(value, kind, self.spec.folder), kind, sampling))
            else:
                raise TypeError(f"unknown content part type {kind!r}")
        return Message(message["role"], tuple(parts))

    def request(self, doc: Mapping[str, Any], repeat: int = 0, gen: GenParams | None = None) -> Request:
        choices = self.choices(doc)
        return Request(
            task=self.name,
            doc_id=self.doc_id_of(doc),
            messages=self.messages(doc),
            gen=gen or self.generation,
            kind=OUTPUT_TYPES[self.spec.output_type],  # type: ignore[arg-type]
            choices=tuple(choices or ()),
            repeat=repeat,
        )

    # ---- scoring -----------------------------------------------------------------------
    @property
    def metric_names(self) -> list[str]:
        if not self.spec.metrics and self.spec.output_type in LIKELIHOOD_DEFAULT_METRICS:
            return list(LIKELIHOOD_DEFAULT_METRICS[self.spec.output_type])
        return [m.name for m in self.spec.metrics]

    @property
    def primary_metric(self) -> str | None:
        names = self.metric_names
        return names[0] if names else None

    def _metric_spec(self, name: str) -> MetricSpec | None:
        return next((m for m in self.spec.metrics if m.name == name), None)

    def higher_is_better(self, metric: str) -> bool:
        spec = self._metric_spec(metric)
        if spec is None:
            return not (self.kind == "loglikelihood" and metric in LIKELIHOOD_LOWER_IS_BETTER)
        return spec.higher_is_better

    def score(self, doc: Mapping[str, Any], response_text: str, judge: Any = None) -> dict[str, float]:
        """Per-metric scores of one response. ``judge`` (a ``pytest_lmms.scoring.judge.Judge``
        or None) is handed to a ``process_results`` that takes a ``judge`` argument."""
        process = self._functions.get("process_results")
        if process is not None:
            if self.uses_judge:
                scores = process(doc, response_text, judge=judge)
            else:
                scores = process(doc, response_text)
            if not isinstance(scores, Mapping):
                raise TypeError(
                    f"process_results returned {type(scores).__name__}, expected a dict of floats"
                )
            return {str(k): _as_float(v, str(k)) for k, v in scores.items()}
        target = self.target(doc)
        choices = self.choices(doc)
        out: dict[str, float] = {}
        for metric in self.spec.metrics:
            if metric.name not in self._metric_functions:
                continue  # a likelihood metric: scored from log-probabilities, not from text
            kwargs = dict(metric.kwargs)
            if choices is not None:
                kwargs.setdefault("choices", choices)
            out[metric.name] = _as_float(
                self._metric_functions[metric.name](response_text, target, **kwargs), metric.name
            )
        return out

    def score_and_answer(
        self, doc: Mapping[str, Any], response_text: str, judge: Any = None
    ) -> tuple[dict[str, float], Any]:
        """The scores of one response and the answer its scorers read out of it (what they
        noted with ``pytest_lmms.scoring.extracted``; None when nothing was noted)."""
        from pytest_lmms.scoring import recording_extracted

        with recording_extracted() as record:
            scores = self.score(doc, response_text, judge=judge)
        return scores, record.value

    def aggregate(self, results: Sequence[SampleResult]) -> dict[str, Estimate]:
        from pytest_lmms import stats

        out: dict[str, Estimate] = {}
        names = self.metric_names or sorted({k for r in results for k in r.scores})
        for name in names:
            scored = [r for r in results if name in r.scores]
            if not scored:
                continue
            aggregation = self._aggregations.get(name)
            if aggregation is not None:
                # rows of a cluster side by side, as in every bootstrap resample
                # (stats.cluster_copies relies on it)
                scored.sort(key=lambda r: (str(r.cluster_id), r.doc_id, r.repeat))
            if self.spec.cluster_key:
                clusters: list[str | None] | None = [r.cluster_id for r in scored]
            elif any(r.repeat for r in scored):
                # k answers to one question are correlated: the question is the cluster.
                clusters = [r.doc_id for r in scored]
            else:
                clusters = None
            if aggregation is None:
                out[name] = stats.estimate([r.scores[name] for r in scored], clusters=clusters)
            else:
                # one function may serve several rows (one per category) and learn which
                if _takes(aggregation, "metric"):
                    aggregation = functools.partial(aggregation, metric=name)
                out[name] = stats.bootstrap(scored, aggregation, clusters=clusters)
        return out

    def submission(self, results: Sequence[SampleResult]) -> Any:
        """The benchmark's submission file content (JSON data) built from a run's results,
        for test splits whose answers are hidden; a TaskConfigError if it has none."""
        function = self._functions.get("submission")
        if function is None:
            raise TaskConfigError(
                f"{self._where}: no 'submission' function: this task has no submission format"
            )
        if _takes(function, "doc"):  # the documents themselves, looked up by id (test splits hide targets)
            return function(list(results), doc=self.doc)
        return function(list(results))

    # ---- identity ----------------------------------------------------------------------
    def _fingerprint(self) -> str:
        """sha256 of the resolved YAML and the source of the modules its functions live in."""
        import orjson

        digest = hashlib.sha256(orjson.dumps(self.spec.raw, default=str, option=orjson.OPT_SORT_KEYS))
        files: dict[str, Any] = {}
        for function in [*self._functions.values(), *self._aggregations.values()]:
            # The function's own globals first: its module may be gone from sys.modules (an
            # in-process pytest session restores sys.modules) while the cached import is reused.
            file = getattr(function, "__globals__", {}).get("__file__")
            files.setdefault(
                function.__module__, file or getattr(sys.modules.get(function.__module__), "__file__", None)
            )
        for module in sorted(files):
            file = files[module]
            if file:
                digest.update(Path(file).read_bytes())
        return digest.hexdigest()


def _takes(function: Callable[..., Any] | None, name: str) -> bool:
    """Whether ``function`` has a parameter ``name`` (an optional keyword the harness fills)."""
    if function is None:
        return False
    try:
        return name in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False


def _as_float(value: Any, metric: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"metric {metric!r} gave {value!r:.60}, not a number") from None
