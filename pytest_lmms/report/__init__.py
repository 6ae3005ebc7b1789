"""What a run reports: terminal table, results.json and samples JSONL files."""

from pytest_lmms.report._results import (
    SamplesWriter,
    default_run_name,
    git_commit,
    package_versions,
    read_samples,
    throughput,
    write_results,
)
from pytest_lmms.report._table import format_table

__all__ = [
    "SamplesWriter",
    "default_run_name",
    "format_table",
    "git_commit",
    "package_versions",
    "read_samples",
    "throughput",
    "write_results",
]
