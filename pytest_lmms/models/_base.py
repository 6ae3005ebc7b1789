"""The Backend protocol every model backend implements."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from pytest_lmms.types import Request, Response


class BackendError(RuntimeError):
    """A model call that failed for good (after the backend's own retries)."""


@runtime_checkable
class Backend(Protocol):
    """A model that answers requests.

    ``identity()`` returns what makes outputs differ (model id, revision, the arguments
    that change outputs) and never transport details (URLs, keys, concurrency): it is
    hashed into every cache key. ``generate`` answers a batch; each element of the result
    is a Response or the exception that request failed with, in request order.
    """

    name: str
    max_batch_size: int

    def identity(self) -> Mapping[str, Any]: ...

    def generate(self, requests: Sequence[Request]) -> list[Response | BaseException]: ...

    def close(self) -> None: ...
