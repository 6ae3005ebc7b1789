"""Hooks other packages implement to extend pytest-lmms (registered on pytest's plugin manager).

A plugin is any module pytest loads (a ``conftest.py``, ``-p module``, or the ``pytest11``
entry point of an installed package) defining functions with these names:

    def pytest_lmms_register_backends(register):
        register("mine", MyBackend)            # --model=mine:MODEL_ID

    def pytest_lmms_register_metrics(register):
        register("anls", anls)                 # metric_list: [{metric: anls}]

    def pytest_lmms_task_paths(config):
        return [Path(__file__).parent / "tasks"]   # task YAMLs collected with the run's

    def pytest_lmms_results(results, run_dir, config):
        results.tasks["mme"].metrics["score"].value   # a pytest_lmms.report.RunResults
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from pytest_lmms.report import RunResults

hookspec = pluggy.HookspecMarker("pytest")


@hookspec
def pytest_lmms_register_backends(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register model backends: ``register(name, factory)``, where ``factory(model_id, **args)``
    builds a backend (see ``pytest_lmms.models.Backend``). Called once per session, at configure."""


@hookspec
def pytest_lmms_register_metrics(register: Callable[[str, Callable[..., float]], None]) -> None:
    """Register per-sample metrics: ``register(name, fn)`` with ``fn(prediction, target, **kw) -> float``."""


@hookspec
def pytest_lmms_task_paths(config: Any) -> Sequence[str | Path] | None:
    """Folders or YAML files of extra tasks, collected with the ones on the command line and
    found by ``--tasks``."""


@hookspec
def pytest_lmms_results(results: RunResults, run_dir: Path, config: Any) -> None:
    """The finished run's typed results (``pytest_lmms.report.RunResults``, what results.json
    holds) and its folder: exporters hook here (the MLflow and W&B ones do). An exporter
    that raises is reported in the summary and fails nothing."""
