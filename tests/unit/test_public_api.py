"""The public API: explicit exports, and imports that stay light."""

from __future__ import annotations

import subprocess
import sys

import pytest_lmms


def test_every_export_resolves() -> None:
    for name in pytest_lmms.__all__:
        assert getattr(pytest_lmms, name) is not None, name


def test_unknown_attribute_is_an_attribute_error() -> None:
    try:
        pytest_lmms.no_such_thing  # noqa: B018
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("expected AttributeError")


def test_plugin_and_api_backends_import_no_heavy_dependency() -> None:
    code = (
        "import sys, pytest_lmms, pytest_lmms.plugin, pytest_lmms.tasks, pytest_lmms.cache, "
        "pytest_lmms.stats, pytest_lmms.models.hf, pytest_lmms.models.random; "
        "print(','.join(sorted(m for m in ('torch', 'transformers', 'scipy', 'datasets', 'pyarrow', 'PIL') "
        "if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
