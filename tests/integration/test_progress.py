"""Progress of a run: the live status area on a terminal, bounded lines in a log, -q quiet."""

from __future__ import annotations

import io
import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_lmms.report._progress import ANSI, LiveArea, ProgressState
from tests.helpers import SCRIPTED_BACKEND, qa_rows, qa_task_yaml, write_jsonl


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_counts_rate_and_eta_from_sample_reports() -> None:
    clock = FakeClock()
    state = ProgressState(clock=clock)
    state.planned("qa", 40)
    assert "waiting for the first answer" not in state.overall()  # no phase set yet: collecting
    clock.now += 3.0  # the model starts: not part of the rate
    for index in range(10):
        state.sample_done(
            {
                "task": "qa",
                "scores": {"exact_match": float(index % 2)},
                "cached": index < 4,
                "output_tokens": 3,
            }
        )
        clock.now += 0.5
    state.sample_failed("qa")
    # 11 done in 5 s since the first answer: 2.2/s, 29 left -> 13 s
    assert state.overall() == "11/40 samples  4 cached  1 failed  elapsed 0:08  ETA 0:13"
    assert state.rates() == "2.2 samples/s  6 output tokens/s"
    assert state.task_lines() == ["qa  11/40  cached 4  failed 1  exact_match 0.5000"]


def test_live_area_stays_below_pytest_output_and_is_cleared_at_the_end() -> None:
    clock = FakeClock()
    screen = io.StringIO()
    lines = ["qa  1/2", "1/2 samples"]
    area = LiveArea(screen, lambda: lines, lambda: 80, clock=clock, min_interval=1.0)
    area.write("qa.yaml ")
    # drawn under the partial line, cursor back at its end (column 9)
    assert screen.getvalue() == "qa.yaml \nqa  1/2\n1/2 samples\x1b[2A\x1b[9G"
    screen.truncate(0), screen.seek(0)
    area.write(".")  # a status letter: the area is left alone (redrawn only when due)
    assert screen.getvalue() == "."
    clock.now += 2
    screen.truncate(0), screen.seek(0)
    area.write(".")
    assert screen.getvalue() == ".\x1b[J\nqa  1/2\n1/2 samples\x1b[2A\x1b[11G"
    screen.truncate(0), screen.seek(0)
    area.write(" [100%]\n")  # ends the line: cleared first, then drawn from the new empty line
    assert screen.getvalue() == "\x1b[J [100%]\nqa  1/2\n1/2 samples\x1b[1A\x1b[1G"
    screen.truncate(0), screen.seek(0)
    area.close()
    area.write("summary\n")
    assert screen.getvalue() == "\x1b[Jsummary\n"


def scripted_project(path: Path, n: int = 6) -> None:
    (path / "conftest.py").write_text(SCRIPTED_BACKEND)
    (path / "pytest.ini").write_text("[pytest]\n")
    write_jsonl(path / "qa.jsonl", qa_rows(n, wrong=[1], fail=[4]))
    (path / "qa.yaml").write_text(qa_task_yaml("qa", "qa.jsonl"))


def run_in_terminal(args: list[str], cwd: Path, timeout: float = 120) -> str:
    """Run a command with a pseudo-terminal as its stdout/stderr and return all it wrote."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "160"}
    env.pop("NO_COLOR", None)
    process = subprocess.Popen(args, cwd=cwd, stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        elif process.poll() is not None:
            break
    process.wait(timeout=10)
    os.close(master)
    return out.decode(errors="replace")


def test_a_terminal_shows_the_status_area_and_ends_with_the_summary(tmp_path: Path) -> None:
    scripted_project(tmp_path)
    output = run_in_terminal(
        [
            sys.executable,
            "-m",
            "pytest",
            "--model=scripted:m1",
            "-p",
            "no:cacheprovider",
            "--lmms-progress-interval=0",
        ],
        tmp_path,
    )
    plain = ANSI.sub("", output).replace("\r", "")
    # the area: per task done/total, cached, failed and running score; rate and ETA
    assert re.search(r"qa  6/6  cached 0  failed 1  exact_match 0\.8000", plain), plain
    assert re.search(r"6/6 samples  0 cached  1 failed  elapsed 0:\d\d  ETA 0:00", plain)
    assert re.search(r"\d+\.\d samples/s  \d+ output tokens/s", plain)
    # cleared before the summary, which comes last and whole
    summary_at = output.index("pytest-lmms results")
    assert output.rfind("\x1b[J", 0, summary_at) > output.rfind("samples/s", 0, summary_at)
    assert "samples/s" not in output[summary_at:]
    assert re.search(r"qa\s+exact_match\s+0\.8000", plain[plain.index("pytest-lmms results") :])


def test_a_log_gets_bounded_progress_lines_and_q_gets_none(lmms_project: pytest.Pytester) -> None:
    write_jsonl(lmms_project.path / "qa.jsonl", qa_rows(6, fail=[4]))
    lmms_project.makefile(".yaml", qa=qa_task_yaml("qa", "qa.jsonl"))
    every_sample = lmms_project.runpytest("--model=scripted:m1", "--lmms-progress-interval=0")
    progress = [line for line in every_sample.outlines if line.startswith("pytest-lmms: ")]
    # (a slow start may first print what the run waits for, at 0 samples done)
    progress = [line for line in progress if not line.split()[1].startswith("0/")]
    assert [line.split()[1] for line in progress] == [f"{k}/6" for k in range(1, 7)]
    assert "1 failed" in progress[-1] and "ETA" in progress[-1]
    # the default interval (30 s) bounds the lines: a short run prints none
    started = time.monotonic()
    default = lmms_project.runpytest("--model=scripted:m1")
    bound = int((time.monotonic() - started) / 30)
    assert len([line for line in default.outlines if line.startswith("pytest-lmms: ")]) <= bound
    quiet = lmms_project.runpytest("--model=scripted:m1", "--lmms-progress-interval=0", "-q")
    assert not [line for line in quiet.outlines if line.startswith("pytest-lmms: ")]
    off = lmms_project.runpytest("--model=scripted:m1", "--lmms-progress-interval=0", "--lmms-progress=off")
    assert not [line for line in off.outlines if line.startswith("pytest-lmms: ")]


SLOW_LOADING_BACKEND = """

@register_model("slowload")
class SlowLoadingBackend:
    # Says what it does while it "loads" (as the hf backend does while it builds or loads a
    # model), for 2.5 s before its first answer.
    name = "slowload"
    max_batch_size = 8

    def __init__(self, model_id=""):
        self.model_id = model_id
        self.status = None

    def identity(self):
        return {"backend": "slowload", "model": self.model_id}

    def generate(self, requests):
        self.status = "loading the weights of " + self.model_id
        time.sleep(2.5)
        self.status = None
        return [Response(text="yes") for _ in requests]

    def close(self):
        pass
"""


def test_a_log_says_what_the_run_waits_for_before_the_first_answer(lmms_project: pytest.Pytester) -> None:
    lmms_project.makeconftest(SCRIPTED_BACKEND + SLOW_LOADING_BACKEND)
    write_jsonl(lmms_project.path / "qa.jsonl", qa_rows(3))
    lmms_project.makefile(".yaml", qa=qa_task_yaml("qa", "qa.jsonl"))
    result = lmms_project.runpytest_subprocess("--model=slowload:big-model", "--no-lmms-cache")
    progress = [line for line in result.outlines if line.startswith("pytest-lmms: ")]
    # the default 30 s interval prints no count line in a 3 s run, but the phases are said,
    # once each, before any sample is done
    assert any("0/3 samples" in line and "loading the weights of big-model" in line for line in progress)
    assert len(progress) == len(set(progress)) <= 3
    assert all(line.split()[1] == "0/3" for line in progress)
    assert result.ret == pytest.ExitCode.OK


def test_repeated_failures_are_grouped_once_with_their_count_and_first_ids(
    lmms_project: pytest.Pytester,
) -> None:
    write_jsonl(lmms_project.path / "qa.jsonl", qa_rows(40, fail=list(range(30)) + [35]))
    lmms_project.makefile(".yaml", qa=qa_task_yaml("qa", "qa.jsonl"))
    result = lmms_project.runpytest("--model=scripted:m1")
    result.assert_outcomes(passed=9, failed=31)  # pytest's own counts are untouched
    result.stdout.fnmatch_lines(
        [
            "*pytest-lmms repeated failures*",
            "31 samples failed: model call failed: RuntimeError: server said no to <doc>",
            "  qa.yaml::qa[[]0[]], qa.yaml::qa[[]1[]], qa.yaml::qa[[]2[]], qa.yaml::qa[[]3[]], qa.yaml::qa[[]4[]] and 26 more",
            "*pytest-lmms results*",
        ]
    )
    # each failure is not listed again, neither in FAILURES nor in the short summary
    assert not [line for line in result.outlines if "server said no to 7" in line]
    assert len(result.outlines) < 60
    # --lf still knows every failure
    rerun = lmms_project.runpytest("--model=scripted:m1", "--lf", "--collect-only", "-q")
    rerun.stdout.fnmatch_lines(["31 tests collected*"])


def test_a_few_failures_are_shown_as_pytest_shows_them(lmms_project: pytest.Pytester) -> None:
    write_jsonl(lmms_project.path / "qa.jsonl", qa_rows(6, fail=[1, 2, 3]))
    lmms_project.makefile(".yaml", qa=qa_task_yaml("qa", "qa.jsonl"))
    result = lmms_project.runpytest("--model=scripted:m1")
    assert "pytest-lmms repeated failures" not in result.stdout.str()
    # each in pytest's FAILURES section and short summary (pytest 8.0 prints no message there)
    result.stdout.fnmatch_lines(
        ["qa[[]2[]]: model call failed: RuntimeError: server said no to 2", "FAILED qa.yaml::qa[[]2[]]*"]
    )


def test_an_endpoint_that_is_not_running_is_one_clear_error(lmms_project: pytest.Pytester) -> None:
    import socket

    with socket.socket() as probe:  # a port nothing listens on once this closes
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    write_jsonl(lmms_project.path / "qa.jsonl", qa_rows(200))
    lmms_project.makefile(".yaml", qa=qa_task_yaml("qa", "qa.jsonl"))
    url = f"http://127.0.0.1:{port}/v1"
    result = lmms_project.runpytest("--model=openai:m", f"--model-args=base_url={url}", "--no-lmms-cache")
    result.assert_outcomes(failed=200)
    result.stdout.fnmatch_lines(
        [
            f"200 samples failed: model call failed: BackendError: cannot connect to {url} "
            f"(127.0.0.1:{port}: Connection refused); is the server running?*",
        ]
    )
    assert len(result.outlines) < 40


def test_a_doc_id_inside_a_shared_message_does_not_split_its_group() -> None:
    from types import SimpleNamespace

    from pytest_lmms.report import group_failures

    def failed(doc: str, message: str) -> SimpleNamespace:
        return SimpleNamespace(
            nodeid=f"qa.yaml::qa[{doc}]",
            longrepr=f"qa[{doc}]: {message}",
            user_properties=[("lmms_task", "qa")],
        )

    shared = [failed(str(i), "cannot connect to http://127.0.0.1:9/v1") for i in range(12)]
    own = [failed(str(i), f"server said no to {i}") for i in range(20, 25)]
    other = [failed("30", "scoring failed: KeyError")]
    groups, rest = group_failures([*shared, *own, *other])
    assert sorted((len(g.reports), g.cause) for g in groups) == [
        (5, "server said no to <doc>"),
        (12, "cannot connect to http://127.0.0.1:9/v1"),
    ]
    assert rest == other


def test_a_terminal_shows_what_the_run_waits_for_while_the_first_sample_waits(tmp_path: Path) -> None:
    # The area is redrawn by a thread while a sample waits for its answer, when pytest's
    # fd capture points stdout at a temporary file: it must still reach the terminal.
    scripted_project(tmp_path)
    (tmp_path / "conftest.py").write_text(SCRIPTED_BACKEND + SLOW_LOADING_BACKEND)
    args = [sys.executable, "-m", "pytest", "--model=slowload:big-model", "--no-lmms-cache"]
    output = run_in_terminal([*args, "-p", "no:cacheprovider"], tmp_path)
    plain = ANSI.sub("", output).replace("\r", "")
    assert re.search(r"0/\d+ samples .* loading the weights of big-model", plain), plain
    assert "pytest-lmms results" in plain
