"""``pytest_lmms.evaluate``: run a pytest-lmms session in-process and return its results."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

RUN_DIR_VARIABLE = "PYTEST_LMMS_RUN_DIR"


class _Capture:
    def __init__(self) -> None:
        self.results: dict[str, Any] | None = None
        self.exit_code: int | None = None

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        from pytest_lmms.plugin import RESULTS_KEY

        self.results = session.config.stash.get(RESULTS_KEY, None)


def evaluate(
    model: str,
    tasks: Sequence[str] = (),
    limit: int | None = None,
    *,
    paths: Sequence[str | Path] | None = None,
    model_args: Mapping[str, Any] | None = None,
    cache: str | Path | None | bool = True,
    output: str | Path | None = None,
    pytest_args: Sequence[str] = (),
    **options: Any,
) -> dict[str, Any]:
    """Evaluate ``model`` on ``tasks`` (names, groups or globs found under ``paths``; by
    default ./benchmarks, else the benchmark catalog that comes with pytest-lmms).

    Returns the results dict that is also written to results.json. Extra keyword options
    are the run settings by their ini / config-file key (``seed=1`` -> ``--lmms-seed=1``,
    ``judge_model="openai:x"`` -> ``--judge-model=openai:x``, ``strict_metrics=True``,
    ``fail_under=["t:acc=0.5", ...]``; ``pytest_lmms.config.evaluate_flags()`` lists them).
    ``cache=False`` disables the response cache; a path selects its directory. Raises
    RuntimeError when the session fails before producing results (for example a usage
    error), ValueError for an unknown backend or keyword.
    """
    from pytest_lmms.models import resolve_backend

    resolve_backend(model)  # a bad model spec is a ValueError naming it, before any session starts
    from pytest_lmms.tasks import default_search_paths

    args = [str(p) for p in (default_search_paths() if paths is None else paths)]
    args += [f"--model={model}", "-q", "-p", "no:cacheprovider"]
    if tasks:
        args.append("--tasks=" + ",".join(tasks))
    if limit is not None:
        args.append(f"--limit={limit}")
    if model_args:
        args.append("--model-args=" + ",".join(f"{k}={v}" for k, v in model_args.items()))
    if cache is False or cache is None:
        args.append("--no-lmms-cache")
    elif cache is not True:
        args.append(f"--lmms-cache={cache}")
    if output is not None:
        args.append(f"--lmms-output={output}")
    args += _setting_args(options)
    args += list(pytest_args)
    capture = _Capture()
    run_dir = os.environ.get(RUN_DIR_VARIABLE)
    try:
        exit_code = pytest.main(args, plugins=[capture])
    finally:  # the session points backends at its run folder: not the caller's business after
        if run_dir is None:
            os.environ.pop(RUN_DIR_VARIABLE, None)
        else:
            os.environ[RUN_DIR_VARIABLE] = run_dir
    if capture.results is None:
        raise RuntimeError(f"pytest-lmms session produced no results (pytest exit code {int(exit_code)})")
    return {**capture.results, "exit_code": int(exit_code)}


def _setting_args(options: Mapping[str, Any]) -> list[str]:
    """Command-line arguments for run settings given as keywords, through the settings table."""
    from pytest_lmms.config import settings

    by_key = {entry.key: entry for _, entry in settings() if entry.flag is not None}
    args: list[str] = []
    for name, value in options.items():
        entry = by_key.get(name)
        if entry is None:
            known = ", ".join(sorted(by_key))
            raise ValueError(f"evaluate(): unknown keyword {name!r}; the run settings are: {known}")
        if entry.action == "flag":
            if value:
                args.append(str(entry.flag))
        elif entry.action == "append":
            args += [f"{entry.flag}={item}" for item in ([value] if isinstance(value, str) else value)]
        elif isinstance(value, Mapping):
            args.append(f"{entry.flag}=" + ",".join(f"{k}={v}" for k, v in value.items()))
        elif isinstance(value, (list, tuple)):
            args.append(f"{entry.flag}=" + ",".join(map(str, value)))
        else:
            args.append(f"{entry.flag}={value}")
    return args
