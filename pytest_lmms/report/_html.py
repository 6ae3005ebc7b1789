"""One self-contained HTML file per run (or per set of runs): header, scores with intervals,
forest plots, the paired comparison, gates, flips, stability, throughput, judge use and a
sample browser with the media as fed. Styles, script, plots and media are all inline, so
the file opens from disk with no server and no network."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

import orjson

from pytest_lmms.report import _html_sections as sections
from pytest_lmms.report._html_assets import CSS, JS
from pytest_lmms.report._html_data import ReportRun, comparison_with, flips, read_run, run_from_results
from pytest_lmms.report._html_media import MediaLimits
from pytest_lmms.report._html_samples import browser_data
from pytest_lmms.report._records import ModelInfo, RunResults, TaskResult
from pytest_lmms.report._results import read_samples
from pytest_lmms.types import SampleResult

RunLike = str | Path | ReportRun


def write_html(
    runs: RunLike | Sequence[RunLike],
    out: str | Path,
    baseline: RunLike | None = None,
    *,
    media: bool = True,
    limits: MediaLimits | None = None,
) -> Path:
    """Write the report of ``runs`` (run folders or results.json files; the first one's
    samples are browsed) against an optional ``baseline`` run to ``out``; returns its path.
    Without ``baseline`` the comparison the first run recorded is shown, if any."""
    loaded = [_as_run(r) for r in ([runs] if isinstance(runs, (str, Path, ReportRun)) else runs)]
    if not loaded:
        raise ValueError("report: no run given")
    base = _as_run(baseline) if baseline is not None else _recorded_baseline(loaded[0])
    page = render_html(loaded, base, media=media, limits=limits)
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, target)
    return target


def write_html_for_run(
    results: RunResults | Mapping[str, Any], run_dir: str | Path, out: str | Path | None = None
) -> Path:
    """The report of a session that has just written ``run_dir`` (default
    ``run_dir/report.html``), compared with the baseline its results name, if any."""
    run = run_from_results(results, run_dir)
    return write_html(run, out if out is not None else Path(run_dir) / "report.html")


def _as_run(run: RunLike) -> ReportRun:
    return run if isinstance(run, ReportRun) else read_run(run)


def _recorded_baseline(run: ReportRun) -> ReportRun | None:
    """The baseline the run was compared with, when its files are still there: a saved
    run (``--baseline``), or the baseline model's samples written next to the run."""
    comparison = run.document.comparison
    if comparison is None:
        return None
    if comparison.baseline:
        try:
            return read_run(comparison.baseline)
        except ValueError:
            return None
    samples: list[SampleResult] = []
    for name in (comparison.baseline_samples or {}).values():
        path = Path(name) if Path(name).is_file() else run.path / Path(name).name
        if path.is_file():
            samples += read_samples(path)
    if not samples:
        return None
    # the baseline model's own metrics are not needed: flips and the browser read the
    # current run's first metric of each task
    tasks = {t: TaskResult(metrics=info.metrics) for t, info in run.document.tasks.items()}
    spec = comparison.baseline_model or "baseline model"
    return ReportRun(run.path, RunResults(model=ModelInfo(spec=spec), tasks=tasks), samples)


def render_html(
    runs: Sequence[ReportRun],
    baseline: ReportRun | None,
    *,
    media: bool = True,
    limits: MediaLimits | None = None,
) -> str:
    current = runs[0]
    comparison = comparison_with(current, baseline)
    flipped = flips(current, baseline) if baseline is not None else {}
    browser = browser_data(current, baseline, flipped, media, limits)
    parts = [
        sections.header_section(runs),
        sections.scores_section(runs),
        sections.comparison_section(comparison),
        sections.gates_section(current),
        sections.flips_section(flipped, baseline),
        sections.stability_section(current),
        sections.throughput_section(runs),
        sections.judge_section(current),
        sections.browser_section(current, browser),
    ]
    data = orjson.dumps(browser).decode("utf-8").replace("</", "<\\/")
    title = f"pytest-lmms report: {', '.join(r.label for r in runs)}"
    return (
        "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{escape(title)}</title>"
        f"<style>{CSS}</style></head><body>"
        + "".join(part for part in parts if part)
        + f"</main><script type='application/json' id='lmms-data'>{data}</script><script>{JS}</script>"
        + "</body></html>\n"
    )
