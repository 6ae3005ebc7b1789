"""The environment protocol an agentic task's ``environment:`` factory returns.

The loop (``_loop.py``) drives it: ``reset`` once per episode, then ``step`` with the tool
calls of each model turn until it reports the episode ended or the step budget is spent,
then ``score``. An environment is deterministic given the seed and the actions, so a
trajectory replayed from the response cache ends in the same state and the same score.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from pytest_lmms.types import Message, ToolCall, ToolSpec


@dataclass(frozen=True, slots=True)
class Observation:
    """What one tool call returned, shown to the model as a ``tool`` turn answering the call
    ``call_id``. ``error`` marks a call the environment refused (unknown tool, bad
    arguments): the model sees the message and the loop counts it as invalid."""

    call_id: str
    content: str
    error: bool = False


@dataclass(frozen=True, slots=True)
class Opening:
    """An episode's start: the opening messages (system, user) and the tools offered."""

    messages: tuple[Message, ...]
    tools: tuple[ToolSpec, ...]


@dataclass(frozen=True, slots=True)
class StepResult:
    """The outcome of one model turn's tool calls.

    ``done`` ends the episode (a final answer, a goal reached, bankruptcy). ``messages``
    are turns the environment adds after the observations (a simulated user's reply).
    ``info`` is free-form and recorded in the trajectory.
    """

    observations: tuple[Observation, ...] = ()
    done: bool = False
    messages: tuple[Message, ...] = ()
    info: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class Environment(Protocol):
    def reset(self, doc: Mapping[str, Any], seed: int) -> Opening: ...

    def step(self, tool_calls: Sequence[ToolCall], text: str = "") -> StepResult:
        """Apply one model turn: its tool calls (possibly none) and its text."""
        ...

    def score(self) -> dict[str, float]:
        """The episode's metrics (higher is better unless the task says otherwise)."""
        ...
