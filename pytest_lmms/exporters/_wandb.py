"""``--lmms-wandb[=PROJECT]``: the finished run as a Weights & Biases run.

The run's summary holds ``<task>/<metric>`` with ``_ci_low``, ``_ci_high``, ``_se``, ``_n``
(final numbers, not a history); its config is the config block (secrets hidden) plus the
model identity; the run folder's files are one artifact of type ``evaluation``. Where it
goes is wandb's own setting (``WANDB_MODE=offline`` writes a local run for ``wandb sync``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytest_lmms.exporters._common import metric_values, run_files, run_tags
from pytest_lmms.report import RunResults


class WandbExporter:
    """A pytest_lmms_results hook implementation, registered when ``--lmms-wandb`` is given."""

    def __init__(self, project: str) -> None:
        import wandb  # noqa: F401 - fail at configure, not after the run, when it is missing

        self.project = project

    def pytest_lmms_results(self, results: RunResults, run_dir: Path, config: Any) -> None:
        import wandb

        run = wandb.init(
            project=self.project,
            name=Path(run_dir).name,
            config={"run": dict(results.config), "model": results.model.spec},
            tags=[results.model.spec or "?"],
            reinit="create_new",
        )
        try:
            for tag, text in run_tags(results).items():
                run.config[tag] = text
            for name, number in metric_values(results).items():
                run.summary[name] = number
            artifact = wandb.Artifact(name=f"pytest-lmms-{Path(run_dir).name}", type="evaluation")
            for path in run_files(Path(run_dir)):
                artifact.add_file(str(path))
            run.log_artifact(artifact)
        finally:
            run.finish()
        self.run_dir = getattr(run, "dir", None)
