"""Results exporters shipped with pytest-lmms (each an optional extra, loaded on request)."""

from pytest_lmms.exporters._common import metric_values

__all__ = ["metric_values"]
