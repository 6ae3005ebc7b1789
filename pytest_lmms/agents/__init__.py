"""Agentic evaluation: environments driven by a multi-turn, tool-calling loop."""

from pytest_lmms.agents._protocol import Environment, Observation, Opening, StepResult

__all__ = ["Environment", "Observation", "Opening", "StepResult"]
