"""Repeated failures grouped: many samples failing for one cause read as one entry.

A dead endpoint fails every sample with the same message; printed one by one they fill
the screen and push the score table away. At the end of the run, sample failures whose
message is the same once the sample's own name is taken out are shown once, with their
count and first node ids, in place of their entries in pytest's FAILURES section and short
summary. pytest's counts (`200 failed`), --lf, the exit status and JUnit XML are untouched:
the reports are hidden from the terminal summary only while it is written.
"""

from __future__ import annotations

import re
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_lmms._properties import TASK_PROPERTY

GROUP_FROM = 4  # a cause shared by this many samples or more is printed once
SHOW_IDS = 5


@dataclass
class FailureGroup:
    cause: str
    reports: list[Any] = field(default_factory=list)


def _message(report: Any) -> tuple[str, str] | None:
    """A sample's failure message without its own name, and the sample's doc id; None for
    other items."""
    if TASK_PROPERTY not in dict(report.user_properties):
        return None
    text = str(report.longrepr).strip()
    _, _, name = report.nodeid.rpartition("::")
    task, _, rest = name.partition("[")
    doc = rest[:-1] if rest.endswith("]") else rest
    text = text.removeprefix(f"{name}: ").removeprefix(f"{task}[{doc}]: ")
    return (text.splitlines()[0] if text else ""), doc.partition("#r")[0]


def _without_doc(message: str, doc: str) -> str:
    if not doc:
        return message
    return re.sub(rf"(?<![\w.-]){re.escape(doc)}(?![\w.-])", "<doc>", message)


def group_failures(reports: list[Any]) -> tuple[list[FailureGroup], list[Any]]:
    """The groups of GROUP_FROM or more samples with one cause, and the reports left as they
    are. Messages are compared as they are first, then with each sample's doc id taken out
    ("server said no to <doc>"), so a doc id that happens to occur in a shared message (a
    port, a count) does not split its group."""
    messages = {id(r): m for r in reports if (m := _message(r)) is not None}
    groups: list[FailureGroup] = []
    for key in (lambda m: m[0], lambda m: _without_doc(*m)):
        by_cause: dict[str, FailureGroup] = {}
        grouped = {id(report) for group in groups for report in group.reports}
        for report in reports:
            message = messages.get(id(report))
            if message is not None and id(report) not in grouped:
                cause = key(message)
                by_cause.setdefault(cause, FailureGroup(cause)).reports.append(report)
        groups += [group for group in by_cause.values() if len(group.reports) >= GROUP_FROM]
    grouped = {id(report) for group in groups for report in group.reports}
    return groups, [report for report in reports if id(report) not in grouped]


def group_lines(groups: list[FailureGroup]) -> list[str]:
    lines = []
    for group in sorted(groups, key=lambda g: -len(g.reports)):
        ids = [report.nodeid for report in group.reports]
        more = f" and {len(ids) - SHOW_IDS} more" if len(ids) > SHOW_IDS else ""
        lines.append(f"{len(ids)} samples failed: {group.cause}")
        lines.append(f"  {', '.join(ids[:SHOW_IDS])}{more}")
    return lines


class FailureGrouper:
    """Wraps the terminal summary: grouped failures printed once, the rest as pytest prints them."""

    @pytest.hookimpl(hookwrapper=True, tryfirst=True)
    def pytest_terminal_summary(self, terminalreporter: Any) -> Generator[None]:
        stats = terminalreporter.stats
        failed = stats.get("failed", [])
        groups, rest = group_failures(failed)
        if groups:
            stats["failed"] = rest
            terminalreporter.write_sep("=", "pytest-lmms repeated failures", red=True)
            for line in group_lines(groups):
                terminalreporter.write_line(line)
        try:
            yield
        finally:
            if groups:
                stats["failed"] = failed
