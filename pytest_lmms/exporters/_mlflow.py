"""``--lmms-mlflow[=EXPERIMENT]``: the finished run as an MLflow run.

Metrics ``<task>/<metric>`` with ``_ci_low``, ``_ci_high``, ``_se``, ``_n``; the config block
(secrets hidden) as parameters; the model identity and git commit as tags; the run folder's
files (results.json, samples, the HTML report) as artifacts. The tracking URI is MLflow's own
setting ($MLFLOW_TRACKING_URI; a ``file:`` URI works without a server).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytest_lmms.exporters._common import flat_params, metric_values, run_files, run_tags
from pytest_lmms.report import RunResults

# MLflow refuses longer parameter values (mlflow.utils.validation MAX_PARAM_VAL_LENGTH)
_MAX_PARAM = 6000


class MlflowExporter:
    """A pytest_lmms_results hook implementation, registered when ``--lmms-mlflow`` is given."""

    def __init__(self, experiment: str) -> None:
        import mlflow  # noqa: F401 - fail at configure, not after the run, when it is missing

        self.experiment = experiment

    def pytest_lmms_results(self, results: RunResults, run_dir: Path, config: Any) -> None:
        import mlflow

        mlflow.set_experiment(self.experiment)
        with mlflow.start_run(run_name=Path(run_dir).name) as run:
            mlflow.log_params({key: value[:_MAX_PARAM] for key, value in flat_params(results.config)})
            mlflow.set_tags(run_tags(results))
            mlflow.log_metrics(metric_values(results))
            for path in run_files(Path(run_dir)):
                mlflow.log_artifact(str(path))
        self.run_id = run.info.run_id
