"""What a run reports: terminal table, results.json and samples JSONL files."""

from pytest_lmms.report._compare import SavedRun, compare_runs, compare_task, format_comparisons, load_run
from pytest_lmms.report._gates import (
    FailUnder,
    GateFailure,
    check_fail_under,
    check_regressions,
    regression_p_value,
)
from pytest_lmms.report._merge import merge_runs
from pytest_lmms.report._results import (
    SamplesWriter,
    default_run_name,
    git_commit,
    package_versions,
    read_samples,
    throughput,
    write_results,
)
from pytest_lmms.report._submission import build_submission, write_submission
from pytest_lmms.report._table import format_table

__all__ = [
    "FailUnder",
    "GateFailure",
    "SavedRun",
    "check_fail_under",
    "check_regressions",
    "compare_runs",
    "compare_task",
    "format_comparisons",
    "load_run",
    "merge_runs",
    "SamplesWriter",
    "build_submission",
    "default_run_name",
    "format_table",
    "git_commit",
    "package_versions",
    "read_samples",
    "regression_p_value",
    "throughput",
    "write_results",
    "write_submission",
]
