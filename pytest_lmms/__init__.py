"""pytest-lmms: a benchmark harness for large multimodal models, built as a pytest plugin.

The public API is re-exported here lazily, so ``import pytest_lmms`` stays cheap (the
pytest plugin itself is loaded by pytest through the ``pytest11`` entry point).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "evaluate": "pytest_lmms._evaluate",
    "load_task": "pytest_lmms.tasks",
    "Task": "pytest_lmms.tasks",
    "register_model": "pytest_lmms.models",
    "Backend": "pytest_lmms.models",
    "BackendError": "pytest_lmms.models",
    "metric": "pytest_lmms.scoring",
    "Request": "pytest_lmms.types",
    "Response": "pytest_lmms.types",
    "SampleResult": "pytest_lmms.types",
    "Estimate": "pytest_lmms.types",
    "MediaRef": "pytest_lmms.types",
    "Message": "pytest_lmms.types",
    "GenParams": "pytest_lmms.types",
}

__all__ = [
    "Backend",
    "BackendError",
    "Estimate",
    "GenParams",
    "MediaRef",
    "Message",
    "Request",
    "Response",
    "SampleResult",
    "Task",
    "__version__",
    "evaluate",
    "load_task",
    "metric",
    "register_model",
]

if TYPE_CHECKING:
    from pytest_lmms._evaluate import evaluate
    from pytest_lmms.models import Backend, BackendError, register_model
    from pytest_lmms.scoring import metric
    from pytest_lmms.tasks import Task, load_task
    from pytest_lmms.types import Estimate, GenParams, MediaRef, Message, Request, Response, SampleResult


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_lmms' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
