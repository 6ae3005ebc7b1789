"""Progress of a run: a live status area on a terminal, bounded progress lines in a log.

The counts come from the sample reports the controller receives (so they are the same with
or without xdist) and, in one process, from the engines' request counters. On a terminal
the status area sits below pytest's own output: every write pytest makes goes through a
proxy of its terminal file that clears the area, writes, and draws it again, so `-v`,
failures and pytest's progress percentage keep working above it.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

import pytest

from pytest_lmms._properties import RESULT_PROPERTY, TASK_PROPERTY, task_of_node_id

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _clock_text(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


@dataclass
class TaskProgress:
    total: int = 0
    done: int = 0
    cached: int = 0
    failed: int = 0
    score_sum: float = 0.0
    scored: int = 0
    metric: str | None = None

    @property
    def score(self) -> float | None:
        return self.score_sum / self.scored if self.scored else None


@dataclass
class ProgressState:
    """Counts of one run, fed by sample reports; every number the views print."""

    clock: Callable[[], float] = time.monotonic
    tasks: dict[str, TaskProgress] = field(default_factory=dict)
    started: float | None = None
    first_answer: float | None = None
    output_tokens: int = 0
    phase: str = "collecting"
    requests: Callable[[], Mapping[str, int]] | None = None  # the engines' counters, when in process
    # what the engines wait for before the first answer (loading a model, starting a server)
    status: Callable[[], str | None] | None = None

    def __post_init__(self) -> None:
        self.started = self.clock()

    def planned(self, task: str, count: int = 1) -> None:
        self.tasks.setdefault(task, TaskProgress()).total += count

    def sample_done(self, result: Mapping[str, Any]) -> None:
        task = self.tasks.setdefault(str(result.get("task")), TaskProgress())
        task.done += 1
        task.cached += bool(result.get("cached"))
        scores = result.get("scores") or {}
        metric = task.metric or next(iter(scores), None)
        task.metric = metric
        if metric is not None and metric in scores:
            task.score_sum += float(scores[metric])
            task.scored += 1
        self.output_tokens += int(result.get("output_tokens") or 0)
        self._answered()

    def sample_failed(self, task_name: str) -> None:
        task = self.tasks.setdefault(task_name, TaskProgress())
        task.done += 1
        task.failed += 1
        self._answered()

    def _answered(self) -> None:
        if self.first_answer is None:
            self.first_answer = self.clock()
            self.phase = "running"

    @property
    def total(self) -> int:
        return sum(t.total for t in self.tasks.values())

    @property
    def done(self) -> int:
        return sum(t.done for t in self.tasks.values())

    def rate(self) -> float | None:
        """Samples per second since the first answer (model start-up is not in the rate)."""
        if self.first_answer is None:
            return None
        span = self.clock() - self.first_answer
        return self.done / span if span > 0 else None

    def eta(self) -> float | None:
        rate = self.rate()
        remaining = self.total - self.done
        if rate is None or rate <= 0 or remaining < 0:
            return None
        return remaining / rate

    def elapsed(self) -> float:
        return self.clock() - (self.started or self.clock())

    def overall(self) -> str:
        """Done / total, failures, elapsed and ETA (or what the run is waiting for)."""
        failed = sum(t.failed for t in self.tasks.values())
        cached = sum(t.cached for t in self.tasks.values())
        parts = [f"{self.done}/{self.total} samples", f"{cached} cached", f"{failed} failed"]
        parts.append(f"elapsed {_clock_text(self.elapsed())}")
        eta = self.eta()
        parts.append(f"ETA {_clock_text(eta)}" if eta is not None else "ETA -")
        if self.first_answer is None:
            parts.append(self.waiting_for())
        return "  ".join(parts)

    def waiting_for(self) -> str:
        """The phase before the first answer, as precise as the engines say it."""
        text = self.status() if self.status is not None else None
        if text:
            return text
        counters = self.requests() if self.requests is not None else {}
        return "starting the model backend" if counters.get("starting") else self.phase

    def rates(self) -> str:
        """Samples and output tokens per second; requests in flight, retries and 429s when
        the engines run in this process."""
        parts = []
        rate = self.rate()
        span = self.clock() - (self.first_answer or self.clock())
        parts.append(f"{rate:.1f} samples/s" if rate is not None else "- samples/s")
        if self.output_tokens and span > 0:
            parts.append(f"{self.output_tokens / span:.0f} output tokens/s")
        counters = self.requests() if self.requests is not None else {}
        for name, label in (("in_flight", "in flight"), ("retries", "retries"), ("rate_limited", "429s")):
            if name in counters:
                parts.append(f"{label} {counters[name]}")
        return "  ".join(parts)

    def task_lines(self) -> list[str]:
        width = max((len(name) for name in self.tasks), default=4)
        lines = []
        for name, task in self.tasks.items():
            score = f"{task.metric} {task.score:.4f}" if task.score is not None and task.metric else "-"
            lines.append(
                f"{name.ljust(width)}  {task.done}/{task.total}  cached {task.cached}  "
                f"failed {task.failed}  {score}"
            )
        return lines


class LiveArea:
    """A status area under pytest's output: a proxy of the terminal's file object.

    A write that stays on pytest's current line (a status letter) leaves the area alone; a
    write that ends the line (or would wrap it) clears the area first and draws it again
    below. Between writes the area is redrawn at most every ``min_interval`` seconds.
    """

    def __init__(
        self,
        file: TextIO,
        lines: Callable[[], list[str]],
        width: Callable[[], int],
        clock: Callable[[], float] = time.monotonic,
        min_interval: float = 0.1,
    ) -> None:
        self.file = file
        self._lines = lines
        self._width = width
        self._clock = clock
        self._min_interval = min_interval
        self._lock = threading.RLock()
        self._column = 0  # visible column of pytest's current (partial) line
        self._drawn = 0  # lines of the area now on the screen
        self._shares_line = False  # the area starts on pytest's (empty) current line
        self._last_draw = -1e18
        self._closed = False

    # --- the file interface pytest writes through --------------------------------------
    def write(self, text: str) -> int:
        with self._lock:
            visible = ANSI.sub("", text)
            moves = "\n" in visible or "\r" in visible or self._column + len(visible) >= self._width()
            if moves or self._shares_line:
                self._clear()
            written = self.file.write(text)
            self._track(visible)
            if not self._closed and (
                not self._drawn or self._clock() - self._last_draw >= self._min_interval
            ):
                self._clear()
                self._draw()
            return written

    def flush(self) -> None:
        self.file.flush()

    def isatty(self) -> bool:
        return True

    def __getattr__(self, name: str) -> Any:
        return getattr(self.file, name)

    # --- the area ------------------------------------------------------------------------
    def refresh(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._clear()
            self._draw()
            self.file.flush()

    def close(self) -> None:
        with self._lock:
            self._clear()
            self._closed = True
            self.file.flush()

    def _track(self, visible: str) -> None:
        tail = visible
        if "\n" in tail:
            self._column = 0
            tail = tail.rsplit("\n", 1)[1]
        if "\r" in tail:
            self._column = 0
            tail = tail.rsplit("\r", 1)[1]
        self._column += len(tail)

    def _clear(self) -> None:
        if self._drawn:
            self.file.write("\x1b[J")  # from the cursor (end of pytest's line) to the screen's end
            self._drawn = 0
            self._shares_line = False

    def _draw(self) -> None:
        width = max(20, self._width() - 1)
        lines = [line[:width] for line in self._lines()]
        if not lines:
            return
        self._shares_line = self._column == 0
        # below pytest's partial line (or from its empty one), then back to pytest's cursor
        text = "\n".join(lines) if self._shares_line else "\n" + "\n".join(lines)
        up = len(lines) - 1 if self._shares_line else len(lines)
        if up:
            text += f"\x1b[{up}A"
        self.file.write(text + f"\x1b[{self._column + 1}G")
        self._drawn = len(lines)
        self._last_draw = self._clock()


class ProgressLines:
    """Progress for logs: one plain line at most every ``interval`` seconds."""

    def __init__(self, write: Callable[[str], None], interval: float, clock: Callable[[], float]) -> None:
        self.write = write
        self.interval = interval
        self.clock = clock
        self.last: float | None = None

    def maybe(self, line: str) -> bool:
        now = self.clock()
        if self.last is not None and now - self.last < self.interval:
            return False
        self.last = now
        self.write(line)
        return True


PROGRESS_MODES = ("auto", "live", "lines", "off")


def _uncaptured(file: Any) -> TextIO | None:
    """A second handle on the file descriptor pytest's terminal writes to (None when the
    file has none, as in an in-process pytester run)."""
    try:
        fd = file.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    encoding = getattr(file, "encoding", None) or "utf-8"
    return os.fdopen(os.dup(fd), "w", encoding=encoding, errors="replace")


class ProgressReporter:
    """The pytest plugin that keeps the counts and draws them (controller side only)."""

    def __init__(
        self,
        config: Any,
        mode: str = "auto",
        interval: float | None = None,
        requests: Callable[[], Mapping[str, int]] | None = None,
        status: Callable[[], str | None] | None = None,
    ) -> None:
        self.config = config
        self.state = ProgressState(requests=requests, status=status)
        self.mode = mode
        self.interval = interval
        self.area: LiveArea | None = None
        self.lines: ProgressLines | None = None
        self._planned_from_workers = False
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()
        self._restore: tuple[Any, Any] | None = None  # pytest's writer and its own file

    # --- what is planned ----------------------------------------------------------------
    def pytest_collection_finish(self, session: Any) -> None:
        for item in session.items:
            task = getattr(item, "task", None)
            if task is not None and hasattr(item, "doc_id"):
                self.state.planned(task.name)
        self.state.phase = "waiting for the first answer (starting the model)"
        self._start(session.config)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        if self._planned_from_workers:
            return  # every worker collects the same items
        self._planned_from_workers = True
        for node_id in ids:
            task = task_of_node_id(node_id)
            if task is not None:
                self.state.planned(task)
        self.state.phase = "waiting for the first answer (workers start their models)"
        self._start(self.config)

    # --- what is done ---------------------------------------------------------------------
    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.when != "call" and not (report.when == "setup" and report.failed):
            return
        properties = dict(report.user_properties)
        result = properties.get(RESULT_PROPERTY)
        if isinstance(result, dict):
            self.state.sample_done(result)
        elif report.failed and TASK_PROPERTY in properties:
            self.state.sample_failed(str(properties[TASK_PROPERTY]))
        else:
            return
        if self.lines is not None:
            self.lines.maybe("pytest-lmms: " + self.state.overall())

    # --- the views --------------------------------------------------------------------------
    def _start(self, config: Any) -> None:
        if self.area is not None or self.lines is not None or not self.state.tasks:
            return
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None or config.get_verbosity() < 0 or self.mode == "off":
            return
        writer = reporter._tw
        file = getattr(writer, "_file", None)
        tty = bool(file is not None and getattr(file, "isatty", lambda: False)() and writer.hasmarkup)
        mode = self.mode if self.mode != "auto" else ("live" if tty else "lines")
        if file is not None and config.getoption("capture", "fd") == "fd":
            # pytest's fd capture points fd 1 at a temporary file while each test runs, so
            # a background thread writing through pytest's own file while a sample waits
            # (all the time a model loads) would write into that capture. A second handle
            # on the terminal is not redirected; pytest's output goes through it too, in order.
            direct = _uncaptured(file)
            if direct is not None:
                file.flush()
                self._restore = (writer, file)
                writer._file = file = direct
        if mode == "live" and file is not None:
            every = 0.5 if self.interval is None else self.interval
            self.area = LiveArea(
                file, self._area_lines, lambda: writer.fullwidth, min_interval=min(0.1, every)
            )
            writer._file = self.area
            self._ticker = threading.Thread(
                target=self._tick, args=(max(every, 0.05),), name="lmms-progress", daemon=True
            )
            self._ticker.start()
        elif mode == "lines":
            every = self.interval if self.interval is not None else 30.0
            self.lines = ProgressLines(reporter.write_line, every, self.state.clock)
            self.lines.last = self.state.clock()  # the first line after one interval, not at once
            # Before the first answer no sample report comes to print a line: a log would
            # show nothing while a model builds or a server starts. A ticker prints one line
            # each time that phase changes (a handful per run), and nothing after.
            self._ticker = threading.Thread(
                target=self._announce_phases, args=(1.0,), name="lmms-progress", daemon=True
            )
            self._ticker.start()

    def _area_lines(self) -> list[str]:
        if not self.state.tasks:
            return []
        return [*self.state.task_lines(), self.state.overall(), self.state.rates()]

    def _announce_phases(self, every: float) -> None:
        announced: str | None = None
        while not self._stop.wait(every) and self.state.first_answer is None:
            phase = self.state.waiting_for()
            if phase != announced and self.lines is not None and self.state.first_answer is None:
                announced = phase
                self.lines.write("pytest-lmms: " + self.state.overall())

    def _tick(self, every: float) -> None:
        while not self._stop.wait(every):
            if self.area is not None:
                self.area.refresh()

    def pytest_sessionfinish(self, session: Any) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        if self.area is not None:
            self.area.close()
        if self._restore is not None:
            writer, original = self._restore
            self._restore = None
            direct = writer._file if not isinstance(writer._file, LiveArea) else writer._file.file
            writer._file = original
            direct.flush()
            direct.close()
