"""The names under which sample items ship what they know in their reports
(``report.user_properties``: locally and through xdist), and reading a sample's node id.
Every reader and writer of those properties takes the names from here."""

from __future__ import annotations

RESULT_PROPERTY = "lmms_result"  # the sample's record (SampleResult.to_json())
TASK_PROPERTY = "lmms_task"  # the task's name, on every sample and task-error item
BASELINE_PROPERTY = "lmms_baseline_result"  # the baseline model's record of the sample
WRONG_PROPERTY = "lmms_wrong"  # answered and scored, primary metric 0
# Where a sample's task is defined: {"task", "yaml", "fingerprint"}. The controller of an
# xdist run collects nothing, so it rebuilds each task's definition from this.
TASK_SOURCE_PROPERTY = "lmms_task_source"
MODELS_PROPERTY = "lmms_models"  # the identity of each model of the run, once per worker
PROBE_PROPERTY = "lmms_probe_result"  # a hand-written test's scores (the lmms_record fixture)


def task_of_node_id(node_id: str) -> str | None:
    """The task of a sample's node id (``path.yaml::task[doc]``); None for other items."""
    _, sep, rest = node_id.rpartition("::")
    if not sep or "[" not in rest or not rest.endswith("]"):
        return None
    return rest.partition("[")[0]
