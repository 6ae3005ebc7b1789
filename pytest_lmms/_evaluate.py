"""``pytest_lmms.evaluate``: run a pytest-lmms session in-process and return its results."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest


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
    paths: Sequence[str | Path] = ("benchmarks",),
    model_args: Mapping[str, Any] | None = None,
    cache: str | Path | None | bool = True,
    output: str | Path | None = None,
    pytest_args: Sequence[str] = (),
    **options: Any,
) -> dict[str, Any]:
    """Evaluate ``model`` on ``tasks`` (names, groups or globs found under ``paths``).

    Returns the results dict that is also written to results.json. Extra keyword options
    map to ``--lmms-<name>`` flags (``seed=1`` -> ``--lmms-seed=1``). ``cache=False``
    disables the response cache; a path selects its directory. Raises RuntimeError when
    the session fails before producing results (for example a usage error), and ValueError
    for an unknown backend.
    """
    from pytest_lmms.models import resolve_backend

    resolve_backend(model)  # a bad model spec is a ValueError naming it, before any session starts
    args = [str(p) for p in paths]
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
    for name, value in options.items():
        args.append(f"--lmms-{name.replace('_', '-')}={value}")
    args += list(pytest_args)
    capture = _Capture()
    exit_code = pytest.main(args, plugins=[capture])
    if capture.results is None:
        raise RuntimeError(f"pytest-lmms session produced no results (pytest exit code {int(exit_code)})")
    return {**capture.results, "exit_code": int(exit_code)}
