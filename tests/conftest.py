"""Shared fixtures: offline environment, the scripted test backend, model-call logs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy  # noqa: F401 - imported once here: in-process pytester runs cannot re-import it
import pytest
import scipy.special  # noqa: F401
import scipy.stats  # noqa: F401

from tests.fake_openai import FakeOpenAI
from tests.helpers import SCRIPTED_BACKEND

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def lmms_project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester folder with the scripted backend registered and a results/cache layout."""
    pytester.makeconftest(SCRIPTED_BACKEND)
    pytester.makeini("[pytest]\n")
    return pytester


@pytest.fixture
def model_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    log = tmp_path / "model_calls.log"
    monkeypatch.setenv("SCRIPTED_LOG", str(log))
    yield log


@pytest.fixture(scope="session")
def lmms_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private PYTEST_LMMS_HOME for the session (the embedded model is built there)."""
    home = tmp_path_factory.mktemp("lmms-home")
    old = os.environ.get("PYTEST_LMMS_HOME")
    os.environ["PYTEST_LMMS_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("PYTEST_LMMS_HOME", None)
    else:
        os.environ["PYTEST_LMMS_HOME"] = old


@pytest.fixture
def openai_server() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI()
    yield server
    server.close()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", default=False, help="also run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
