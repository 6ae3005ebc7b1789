"""Backend registry: decorator, built-ins by module path, and the entry-point group."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Any, TypeVar

from pytest_lmms.models._base import Backend

ENTRY_POINT_GROUP = "pytest_lmms.models"

BackendFactory = Callable[..., Backend]
F = TypeVar("F", bound=BackendFactory)

_REGISTRY: dict[str, BackendFactory] = {}

# Built-ins are imported only when asked for, so resolving "random" never imports torch.
_BUILTIN_MODULES: dict[str, str] = {
    "random": "pytest_lmms.models.random",
    "hf": "pytest_lmms.models.hf",
    "openai": "pytest_lmms.models.openai",
    "anthropic": "pytest_lmms.models.anthropic",
    "vllm": "pytest_lmms.models.vllm",
    "sglang": "pytest_lmms.models.sglang",
}


def register_model(name: str) -> Callable[[F], F]:
    """Register a backend class (or factory) under ``name``: ``--model=name:MODEL_ID``."""

    def decorator(factory: F) -> F:
        _REGISTRY[name] = factory
        return factory

    return decorator


def _load(name: str) -> BackendFactory | None:
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name in _BUILTIN_MODULES:
        importlib.import_module(_BUILTIN_MODULES[name])
        return _REGISTRY.get(name)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            loaded = ep.load()
            _REGISTRY.setdefault(name, loaded)
            return _REGISTRY[name]
    return None


def available_backends() -> dict[str, str]:
    """Backend name -> where it comes from, without importing any backend module."""
    found = {name: f"built-in ({module})" for name, module in _BUILTIN_MODULES.items()}
    for name, factory in _REGISTRY.items():
        found.setdefault(name, f"registered ({factory.__module__})")
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, f"entry point ({ep.value})")
    return dict(sorted(found.items()))


def parse_model_spec(spec: str) -> tuple[str, str]:
    """Split ``BACKEND:MODEL_ID`` (the model id may itself contain colons)."""
    backend, sep, model_id = spec.partition(":")
    if not sep or not backend:
        raise ValueError(
            f"--model expects BACKEND:MODEL_ID (for example random:seed0 or hf:Qwen/Qwen2-VL-2B), "
            f"got {spec!r}"
        )
    return backend, model_id


def resolve_backend(spec: str) -> tuple[BackendFactory, str]:
    """The factory and model id for ``BACKEND:MODEL_ID``, without constructing anything."""
    backend_name, model_id = parse_model_spec(spec)
    factory = _load(backend_name)
    if factory is None:
        known = ", ".join(available_backends())
        raise ValueError(f"unknown model backend {backend_name!r} in --model={spec}; known: {known}")
    return factory, model_id


def create_backend(spec: str, args: Mapping[str, Any] | None = None) -> Backend:
    factory, model_id = resolve_backend(spec)
    try:
        return factory(model_id, **dict(args or {}))
    except TypeError as exc:
        if "argument" not in str(exc):
            raise
        raise ValueError(f"--model={spec} --model-args {dict(args or {})}: {exc}") from None
