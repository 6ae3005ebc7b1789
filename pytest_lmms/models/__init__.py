"""Model backends: the Backend protocol, the registry, and the request engine."""

from pytest_lmms.models._base import Backend, BackendError
from pytest_lmms.models._registry import (
    ENTRY_POINT_GROUP,
    available_backends,
    create_backend,
    parse_model_spec,
    register_model,
    resolve_backend,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "Backend",
    "BackendError",
    "available_backends",
    "create_backend",
    "parse_model_spec",
    "register_model",
    "resolve_backend",
]
