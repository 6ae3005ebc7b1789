"""What a run reports: terminal table, results.json and samples JSONL files."""

from pytest_lmms.report._compare import SavedRun, compare_runs, compare_task, format_comparisons, load_run
from pytest_lmms.report._failures import FailureGrouper, group_failures
from pytest_lmms.report._gates import (
    FailUnder,
    GateFailure,
    check_fail_under,
    check_regressions,
    regression_p_value,
)
from pytest_lmms.report._html import write_html, write_html_for_run
from pytest_lmms.report._html_media import MediaLimits
from pytest_lmms.report._merge import merge_runs
from pytest_lmms.report._progress import ProgressReporter, ProgressState
from pytest_lmms.report._results import (
    SamplesWriter,
    default_run_name,
    git_commit,
    package_versions,
    prompt_record,
    read_samples,
    throughput,
    write_results,
)
from pytest_lmms.report._runs import RunEntry, find_latest, list_runs, resolve_run, sample_records
from pytest_lmms.report._submission import build_submission, write_submission
from pytest_lmms.report._table import format_table

__all__ = [
    "FailUnder",
    "FailureGrouper",
    "GateFailure",
    "MediaLimits",
    "RunEntry",
    "SavedRun",
    "check_fail_under",
    "check_regressions",
    "compare_runs",
    "compare_task",
    "format_comparisons",
    "load_run",
    "merge_runs",
    "ProgressReporter",
    "ProgressState",
    "SamplesWriter",
    "build_submission",
    "default_run_name",
    "find_latest",
    "format_table",
    "git_commit",
    "group_failures",
    "list_runs",
    "package_versions",
    "prompt_record",
    "read_samples",
    "regression_p_value",
    "resolve_run",
    "sample_records",
    "throughput",
    "write_html",
    "write_html_for_run",
    "write_results",
    "write_submission",
]
