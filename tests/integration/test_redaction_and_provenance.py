"""What a run writes keeps secrets out and says which code produced it.

Real sessions: against a loopback OpenAI-compatible server with the keys in the environment
(the openai backend takes no key as an argument), and with a user's backend that takes a key
as a model argument: no file the run leaves (results, samples, the response cache, JUnit XML,
the HTML report) and nothing it prints holds a key. Run inside a real git repository,
results.json names its HEAD and whether tracked files differ from it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.fake_openai import FakeOpenAI
from tests.helpers import SCRIPTED_BACKEND, qa_rows, qa_task_yaml, write_jsonl

SECRET = "sk-live-7f3a9c0e5d1b"
ENV_SECRET = "sk-env-2b8e6d4f0a1c"


def files_holding(root: Path, text: str) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and text.encode() in path.read_bytes():
            hits.append(str(path.relative_to(root)))
    return hits


def test_no_secret_reaches_any_file_or_output_of_a_run(
    pytester: pytest.Pytester, openai_server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_jsonl(pytester.path / "qa.jsonl", qa_rows(4, wrong=[1]))
    pytester.makefile(".yaml", qa=qa_task_yaml("qa", "qa.jsonl"))
    monkeypatch.setenv("TEST_MODEL_KEY", SECRET)
    monkeypatch.setenv("TEST_JUDGE_KEY", ENV_SECRET)
    result = pytester.runpytest_subprocess(
        "--model=openai:gpt-test",
        f"--model-args=base_url={openai_server.url},api_key_env=TEST_MODEL_KEY",
        "--judge-model=openai:judge-test",
        f"--judge-model-args=base_url={openai_server.url},api_key_env=TEST_JUDGE_KEY",
        "--lmms-output=results",
        "--lmms-cache=cache",
        "--lmms-html",
        "--junitxml=junit.xml",
        "-rA",
    )
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    # the key did reach the server (so the run really used it; this task calls no judge) ...
    assert {h.get("Authorization") for h in openai_server.headers} == {f"Bearer {SECRET}"}
    # ... and nothing the run left or printed holds them
    assert_nothing_holds(pytester, result, SECRET, ENV_SECRET)
    config = json.loads(next(pytester.path.glob("results/*/results.json")).read_text())["config"]
    assert config["model_args"]["api_key_env"] == "TEST_MODEL_KEY"  # a name, not a secret
    assert config["judge_model_args"]["api_key_env"] == "TEST_JUDGE_KEY"


KEYED_BACKEND = """

@register_model("keyed")
class KeyedBackend(ScriptedBackend):
    # a user's backend that takes its key as a model argument
    def __init__(self, model_id="", api_key="", batch_size="4"):
        super().__init__(model_id, batch_size)
        assert api_key.startswith("sk-"), "the key reaches the backend"
"""


def test_a_secret_model_argument_is_hidden_everywhere(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(SCRIPTED_BACKEND + KEYED_BACKEND)
    write_jsonl(pytester.path / "qa.jsonl", qa_rows(4, wrong=[2]))
    pytester.makefile(".yaml", qa=qa_task_yaml("qa", "qa.jsonl"))
    result = pytester.runpytest_subprocess(
        "--model=keyed:m",
        f"--model-args=api_key={SECRET}",
        "--lmms-output=results",
        "--lmms-cache=cache",
        "--lmms-html",
        "--junitxml=junit.xml",
        "-rA",
    )
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert_nothing_holds(pytester, result, SECRET)
    config = json.loads(next(pytester.path.glob("results/*/results.json")).read_text())["config"]
    assert config["model_args"] == {"api_key": "***"}


def assert_nothing_holds(pytester: pytest.Pytester, result: pytest.RunResult, *secrets: str) -> None:
    (results_file,) = pytester.path.glob("results/*/results.json")
    assert list(results_file.parent.glob("*.html")), "no HTML report written"
    assert list(results_file.parent.glob("samples_*.jsonl")), "no samples written"
    assert (pytester.path / "cache").is_dir() and (pytester.path / "junit.xml").is_file()
    for secret in secrets:
        assert files_holding(pytester.path, secret) == []
        assert secret not in result.stdout.str() and secret not in result.stderr.str()


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def run_and_read_git(pytester: pytest.Pytester) -> dict:
    result = pytester.runpytest_subprocess("--model=random:0", "--lmms-output=results", "--no-lmms-cache")
    assert result.ret == pytest.ExitCode.OK
    newest = sorted(pytester.path.glob("results/*/results.json"))[-1]
    return json.loads(newest.read_text())["git"]


def test_results_name_the_commit_and_whether_the_tree_was_dirty(pytester: pytest.Pytester) -> None:
    write_jsonl(pytester.path / "qa.jsonl", qa_rows(3))
    pytester.makefile(".yaml", qa=qa_task_yaml("qa", "qa.jsonl"))
    (pytester.path / ".gitignore").write_text("results/\n")
    git(pytester.path, "init", "-q")
    git(pytester.path, "add", "qa.yaml", "qa.jsonl", ".gitignore")
    git(pytester.path, "commit", "-q", "-m", "tasks")
    head = git(pytester.path, "rev-parse", "HEAD")

    assert run_and_read_git(pytester) == {"commit": head, "dirty": False}
    # a tracked file edited after the commit: the results say the tree differed
    (pytester.path / "qa.yaml").write_text((pytester.path / "qa.yaml").read_text() + "\n# edited\n")
    assert run_and_read_git(pytester) == {"commit": head, "dirty": True}


def test_results_outside_a_repository_have_no_commit(pytester: pytest.Pytester) -> None:
    write_jsonl(pytester.path / "qa.jsonl", qa_rows(2))
    pytester.makefile(".yaml", qa=qa_task_yaml("qa", "qa.jsonl"))
    # pytester folders live under the system temp dir, outside any repository
    assert subprocess.run(["git", "rev-parse"], cwd=pytester.path, capture_output=True).returncode != 0
    assert run_and_read_git(pytester) is None
