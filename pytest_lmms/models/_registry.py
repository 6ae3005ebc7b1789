"""Backend registry: decorator, built-ins by module path, and the entry-point group."""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable, Collection, Mapping
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
        known = available_backends()
        raise ValueError(
            f"unknown backend {backend_name!r}; {_did_you_mean(backend_name, known)}known: {', '.join(known)}"
        )
    return factory, model_id


def create_backend(spec: str, args: Mapping[str, Any] | None = None) -> Backend:
    """The backend of ``BACKEND:MODEL_ID`` built with ``args``; a ValueError naming the
    valid arguments when one is unknown or a required one is missing."""
    factory, model_id = resolve_backend(spec)
    arguments = dict(args or {})
    check_backend_arguments(parse_model_spec(spec)[0], factory, arguments)
    return factory(model_id, **arguments)


def check_backend_arguments(name: str, factory: BackendFactory, args: Collection[str]) -> None:
    """Raise ValueError for argument names the factory's signature cannot take.

    The parameters after the first (which receives the model id) are the arguments. A
    factory taking ``**kwargs`` checks its own (``openai`` and ``hf`` do), so nothing is
    checked here; neither is a factory whose signature cannot be read.
    """
    try:
        parameters = list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if parameters and parameters[0].kind in positional:
        parameters = parameters[1:]  # the model id
    named = [p for p in parameters if p.kind in (*positional[1:], inspect.Parameter.KEYWORD_ONLY)]
    valid = [p.name for p in named]
    listed = ", ".join(valid) if valid else "none"
    unknown = [key for key in args if key not in valid]
    if unknown:
        hint = _did_you_mean(unknown[0], valid) if len(unknown) == 1 else ""
        what = "argument" if len(unknown) == 1 else "arguments"
        shown = ", ".join(repr(key) for key in unknown)
        raise ValueError(f"unknown {what} {shown} for backend {name!r}; {hint}valid arguments: {listed}")
    missing = [p.name for p in named if p.default is inspect.Parameter.empty and p.name not in args]
    if missing:
        raise ValueError(
            f"backend {name!r} needs argument(s) {', '.join(missing)}; valid arguments: {listed}"
        )


def _did_you_mean(word: str, known: Collection[str]) -> str:
    """``"did you mean 'x'? "`` for the closest known name, or nothing when none is close."""
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}? " if close else ""
