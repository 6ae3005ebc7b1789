"""Tasks: YAML definitions, dataset sources, prompts, scoring and aggregation."""

from pytest_lmms.tasks._discover import TaskIndex, catalog_path, default_search_paths, discover, load_task
from pytest_lmms.tasks._sources import Source, open_source
from pytest_lmms.tasks._spec import (
    DatasetError,
    FunctionRef,
    GroupSpec,
    MetricSpec,
    TaskConfigError,
    TaskSpec,
    is_task_file,
    load_specs,
)
from pytest_lmms.tasks._task import Task, render_template

__all__ = [
    "DatasetError",
    "FunctionRef",
    "GroupSpec",
    "MetricSpec",
    "Source",
    "Task",
    "TaskConfigError",
    "TaskIndex",
    "TaskSpec",
    "catalog_path",
    "default_search_paths",
    "discover",
    "is_task_file",
    "load_specs",
    "load_task",
    "open_source",
    "render_template",
]
