"""What every exporter logs, flattened from the typed results: the same names everywhere."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pytest_lmms.report import RunResults

# the fields of an estimate logged beside its value (named <task>/<metric>_<field>: a name
# that is also a path prefix of another breaks MLflow's file store)
INTERVAL_FIELDS = ("ci_low", "ci_high", "se", "n")


def metric_values(results: RunResults) -> dict[str, float]:
    """``<task>/<metric>`` -> value, and ``<task>/<metric>_<ci_low|ci_high|se|n>``; a
    comparison against a baseline as ``<task>/<metric>_diff`` and ``..._p_value``.
    Undefined numbers (a NaN SE, written as null) are left out, never logged as 0."""
    out: dict[str, float] = {}
    for task, info in sorted(results.tasks.items()):
        for metric, estimate in sorted(info.metrics.items()):
            name = f"{task}/{metric}"
            if estimate.value is not None:
                out[name] = float(estimate.value)
            for field_name in INTERVAL_FIELDS:
                value = getattr(estimate, field_name)
                if value is not None:
                    out[f"{name}_{field_name}"] = float(value)
    if results.comparison is not None:
        for task, row in sorted(results.comparison.tasks.items()):
            for field_name in ("diff", "p_value"):
                value = getattr(row, field_name)
                if value is not None:
                    out[f"{task}/{row.metric}_{field_name}"] = float(value)
    return out


def flat_params(config: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """The run's config block (secrets already hidden) as ``key`` / ``parent.key`` strings."""
    for key, value in sorted(config.items()):
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from flat_params(value, prefix=f"{name}.")
        else:
            yield name, "" if value is None else str(value)


def run_tags(results: RunResults) -> dict[str, str]:
    """The model that answered and the code that ran, as short strings."""
    tags = {"pytest_lmms.model": results.model.spec or "?"}
    for key, value in sorted((results.model.identity or {}).items()):
        tags[f"pytest_lmms.identity.{key}"] = str(value)
    if results.git is not None:
        tags["pytest_lmms.git_commit"] = results.git.commit
        tags["pytest_lmms.git_dirty"] = str(results.git.dirty).lower()
    tags["pytest_lmms.complete"] = str(bool(results.completeness and results.completeness.complete)).lower()
    return tags


def run_files(run_dir: Path) -> list[Path]:
    """The run folder's files (results.json, samples, the HTML report) to attach."""
    return sorted(path for path in Path(run_dir).iterdir() if path.is_file())
