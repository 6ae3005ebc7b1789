"""The typed records of results.json: one frozen dataclass per JSON object a run writes.

Field names and order are the JSON keys and their order; ``_schema`` turns these classes
into JSON, back, and into the published JSON Schema, so a field exists in one place only.
Field metadata: ``omit`` (the key is left out while the value is its default: optional
keys such as a task's ``error``) and ``doc`` (the field's description in the JSON Schema).

Dataclasses rather than pydantic models: they cost nothing to import (``import
pytest_lmms.plugin`` stays fast), add no dependency, and SampleResult / Estimate in
``pytest_lmms.types`` already are dataclasses the hot path builds per sample.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pytest_lmms.types import Estimate

#: The layout this package writes. 1: before the typed schema (read as is); 2: the typed
#: schema (comparisons write every statistic key, null when the comparison failed).
RESULTS_SCHEMA_VERSION = 2
READABLE_SCHEMA_VERSIONS = (1, 2)

_OMIT = {"omit": True}


def _doc(text: str, **extra: Any) -> dict[str, Any]:
    return {"doc": text, **extra}


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricResult:
    """One metric of a task: its estimate (NaN written as null) and its direction."""

    value: float | None
    se: float | None
    ci_low: float | None
    ci_high: float | None
    n: int
    n_clusters: int | None = None
    method: str = "t"
    level: float = 0.95
    # None only in a baseline model's metrics, which do not repeat the direction
    higher_is_better: bool | None = field(default=None, metadata=_OMIT)

    @classmethod
    def of(cls, estimate: Estimate, higher_is_better: bool | None = None) -> MetricResult:
        data = estimate.to_json()
        return cls(**data, higher_is_better=higher_is_better)


@dataclass(frozen=True, slots=True, kw_only=True)
class Throughput:
    """Samples, cache hits, model calls and tokens, over a wall time."""

    samples: int
    cached: int
    model_calls: int
    input_tokens: int
    output_tokens: int
    wall_s: float
    samples_per_s: float | None = None
    output_tokens_per_s: float | None = None
    latency_p50_s: float | None = None
    latency_p95_s: float | None = None
    ttft_p50_s: float | None = None
    ttft_p95_s: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class VarianceRow:
    doc_id: str
    variance: float
    mean: float


@dataclass(frozen=True, slots=True, kw_only=True)
class StabilityResult:
    """Expected / consensus accuracy, internal variance and consistency over repeats."""

    expected_accuracy: float
    consensus_accuracy: float
    internal_variance: float
    consistency_rate: float
    n_questions: int
    k: int
    metric: str
    highest_internal_variance: tuple[VarianceRow, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class JudgeUse:
    """How many samples of a task needed the LLM judge, and its calls."""

    samples: int
    calls: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskResult:
    """One task of a run: where it came from, how many samples, its metrics."""

    yaml: str | None = field(default=None, metadata=_doc("the task's YAML file"))
    fingerprint: str | None = field(default=None, metadata=_doc("hash of the task definition"))
    n: int = field(default=0, metadata=_doc("scored samples"))
    failed: int = field(default=0, metadata=_doc("samples that failed (never scored)"))
    planned: int | None = field(default=None, metadata=_doc("samples this run collected"))
    metrics: Mapping[str, MetricResult] = field(default_factory=dict)
    missing_metrics: tuple[str, ...] = field(
        default=(), metadata=_doc("metrics the YAML declares that no sample produced")
    )
    samples_file: str | None = None
    wall_s: float | None = field(default=None, metadata=_doc("first sample start to last sample end"))
    throughput: Throughput | None = None
    stability: StabilityResult | None = None
    judge: JudgeUse | None = None
    error: str | None = field(default=None, metadata=_OMIT | _doc("why the task was not aggregated"))

    @property
    def primary_metric(self) -> str | None:
        """The first metric (the one the summary, gates and comparisons use)."""
        return next(iter(self.metrics), None)


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelInfo:
    spec: str | None = field(default=None, metadata=_doc("the --model spec, backend:model_id"))
    identity: Mapping[str, Any] | None = field(
        default=None, metadata=_doc("what identifies the model's outputs (no URLs, no keys)")
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class GitInfo:
    commit: str = field(metadata=_doc("HEAD of the repository the run started in"))
    dirty: bool = field(metadata=_doc("tracked files differed from HEAD"))


@dataclass(frozen=True, slots=True, kw_only=True)
class JudgePromptRecord:
    template: str
    system: str | None = None
    max_new_tokens: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class JudgeInfo:
    """The judge model and the text of every judge prompt the run asked (None: a prompt
    name this process never registered)."""

    model: str
    identity: Mapping[str, Any] | None = None
    prompts: Mapping[str, JudgePromptRecord | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Agreement:
    """Right/wrong cross-tabulation of two runs on the shared documents (0/1 metrics)."""

    both_right: int
    only_current: int
    only_baseline: int
    both_wrong: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskComparison:
    """The paired difference current - baseline of one task's metric on shared documents."""

    metric: str
    n: int = field(metadata=_doc("documents scored in both runs"))
    only_in_current: int = 0
    only_in_baseline: int = 0
    error: str | None = field(default=None, metadata=_OMIT)
    diff: float | None = None
    se: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    n_clusters: int | None = None
    method: str | None = None
    level: float | None = None
    current: float | None = field(default=None, metadata=_doc("current mean on the shared documents"))
    baseline: float | None = field(default=None, metadata=_doc("baseline mean on the shared documents"))
    agreement: Agreement | None = None
    p_holm: float | None = field(default=None, metadata=_doc("p-value adjusted with Holm's method"))


@dataclass(frozen=True, slots=True, kw_only=True)
class ComparisonResult:
    """The run's paired comparison with a saved baseline run or a baseline model."""

    baseline: str | None = field(metadata=_doc("the baseline's results.json (None: a baseline model)"))
    baseline_model: str | None = None
    error: str | None = field(default=None, metadata=_OMIT | _doc("why the baseline was not usable"))
    baseline_identity: Mapping[str, Any] | None = field(default=None, metadata=_OMIT)
    baseline_metrics: Mapping[str, Mapping[str, MetricResult]] | None = field(default=None, metadata=_OMIT)
    baseline_samples: Mapping[str, str] | None = field(default=None, metadata=_OMIT)
    tasks: Mapping[str, TaskComparison] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class GateFailureRecord:
    gate: str = field(metadata=_doc("fail-under, regression or strict-metrics"))
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Gates:
    fail_under: tuple[str, ...] = ()
    fail_on_regression: float | None = None
    failures: tuple[GateFailureRecord, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class NotDone:
    nodeid: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Completeness:
    """Planned against done: a run cut short (Ctrl-C, -x, a dead worker) says so."""

    planned: int
    done: int
    scored: int
    failed: int
    not_done: int
    interrupted: bool
    complete: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Timings:
    wall_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class RunResults:
    """A whole results.json: the run header, every task, the comparison and the gates."""

    schema_version: int = RESULTS_SCHEMA_VERSION
    created: str = field(default="?", metadata=_doc("local time the run ended, ISO 8601"))
    config: Mapping[str, Any] = field(
        default_factory=dict, metadata=_doc("the run settings (RunConfig.to_json(), secrets hidden)")
    )
    model: ModelInfo = field(default_factory=ModelInfo)
    versions: Mapping[str, str] = field(default_factory=dict)
    git: GitInfo | None = None
    merged_from: tuple[str, ...] = field(
        default=(), metadata=_OMIT | _doc("the shard runs `pytest-lmms merge` united")
    )
    tasks: Mapping[str, TaskResult] = field(default_factory=dict)
    timings: Timings = field(default_factory=lambda: Timings(wall_s=0.0))
    throughput: Throughput | None = None
    results_file: str | None = None
    judge: JudgeInfo | None = None
    comparison: ComparisonResult | None = None
    gates: Gates = field(default_factory=Gates)
    not_done: tuple[NotDone, ...] = ()
    completeness: Completeness | None = field(
        default=None, metadata=_doc("None in runs written before it was recorded")
    )

    @property
    def label(self) -> str | None:
        return self.model.spec
