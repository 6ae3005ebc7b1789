"""The answer a scorer read out of a response, recorded beside the sample's scores.

A wrong answer is understood by what was extracted from it ("the model said B" versus "no
option could be read"). Scorers need not return it: the shared parsers (``extract_choice``,
``extract_number``, MMMU's parsers, the built-in metrics) note what they read while a sample
is being scored, and a benchmark's own ``process_results`` may call ``extracted(value)`` to
say what it finally settled on. The last value noted wins; outside scoring nothing is kept.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

T = TypeVar("T")

_UNSET: Any = object()
_CURRENT: ContextVar[list[Any] | None] = ContextVar("pytest_lmms_extracted", default=None)


def extracted(value: T) -> T:
    """Note ``value`` as the answer read from the response being scored; returns it."""
    holder = _CURRENT.get()
    if holder is not None:
        holder[0] = value
    return value


class Recording:
    def __init__(self) -> None:
        self._holder: list[Any] = [_UNSET]

    @property
    def noted(self) -> bool:
        return self._holder[0] is not _UNSET

    @property
    def value(self) -> Any:
        """The last value noted (None when nothing was)."""
        return None if self._holder[0] is _UNSET else self._holder[0]


@contextmanager
def recording_extracted() -> Iterator[Recording]:
    """Collect what the scorers note while the block runs (one sample's scoring)."""
    record = Recording()
    token = _CURRENT.set(record._holder)
    try:
        yield record
    finally:
        _CURRENT.reset(token)
