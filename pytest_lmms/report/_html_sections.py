"""The report's sections as HTML strings: run header, scores (table, forest plot, a line
over runs), paired comparison, gates, flips, stability, throughput, judge, sample browser."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

from pytest_lmms.report._html_data import ReportRun
from pytest_lmms.report._html_plots import PALETTE, ForestRow, Series, forest_plot, line_plot
from pytest_lmms.report._records import ComparisonResult, MetricResult, RunResults

# ---- formatting ------------------------------------------------------------------------


def fmt(value: Any, digits: int = 4) -> str:
    """Numbers as the terminal table prints them; '-' for missing or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _kv(pairs: Iterable[tuple[str, Any]]) -> str:
    items = "".join(
        f"<dt>{escape(str(k))}</dt><dd>{escape(str(v))}</dd>" for k, v in pairs if v not in (None, "", {}, [])
    )
    return f"<dl class='kv'>{items}</dl>"


def _table(header: Sequence[str], rows: Iterable[str], cls: str = "data", attrs: str = "") -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    return f"<table class='{cls}'{attrs}><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _cell(value: Any, field: str = "", digits: int = 4) -> str:
    attr = f" data-field='{field}'" if field else ""
    cls = "num" if isinstance(value, (int, float)) and not isinstance(value, bool) else ""
    return f"<td class='{cls}'{attr}>{escape(fmt(value, digits))}</td>"


def _ci(low: Any, high: Any) -> str:
    if low is None or high is None:
        return "<td class='num' data-field='ci'>-</td>"
    return f"<td class='num' data-field='ci'>[{fmt(low)}, {fmt(high)}]</td>"


# ---- sections --------------------------------------------------------------------------


def header_section(runs: Sequence[ReportRun]) -> str:
    current = runs[0]
    out = ["<header class='top'>", f"<h1>{escape(current.label)}</h1>"]
    out.append(f"<div class='muted'>{escape(_status_line(current))}</div></header><main>")
    for index, run in enumerate(runs):
        if len(runs) > 1:
            colour = PALETTE[index % len(PALETTE)]
            out.append(f"<h2><i style='color:{colour}'>&#9679;</i> run {index + 1}: {escape(run.label)}</h2>")
        else:
            out.append("<h2>Run</h2>")
        out.append(_run_details(run))
    return "".join(out)


def _status_line(run: ReportRun) -> str:
    results = run.document
    parts = [f"created {results.created}", _completeness_text(results)]
    parts.append(f"wall time {results.timings.wall_s:.1f} s")
    return " · ".join(p for p in parts if p)


def _completeness_text(results: RunResults) -> str:
    block = results.completeness
    if block is None:  # a run written before completeness was recorded
        return f"{len(results.not_done)} sample(s) not done" if results.not_done else ""
    state = "complete" if block.complete else ("interrupted" if block.interrupted else "incomplete")
    return f"{state}: {block.done} of {block.planned} samples done, {block.failed} failed"


def _run_details(run: ReportRun) -> str:
    results = run.document
    identity = results.model.identity or {}
    git = results.git
    commit = f"{git.commit}{' (dirty)' if git.dirty else ''}" if git is not None else None
    config = {k: v for k, v in results.config.items() if v not in (None, "", {}, [], False)}
    versions = results.versions
    out = [
        _kv(
            [
                ("model", results.model.spec),
                ("identity", ", ".join(f"{k}={v}" for k, v in identity.items())),
                ("folder", str(run.path)),
                ("git commit", commit),
                ("status", _status_line(run)),
                ("versions", ", ".join(f"{k} {v}" for k, v in versions.items())),
            ]
        )
    ]
    if config:
        out.append(
            "<details class='cfg'><summary>configuration</summary>" + _kv(config.items()) + "</details>"
        )
    return "".join(out)


def _score_rows(runs: Sequence[ReportRun]) -> list[tuple[int, str, str, MetricResult, int]]:
    """(run index, task, metric, estimate, failed) for every metric of every run."""
    rows = []
    for index, run in enumerate(runs):
        for task, info in run.tasks.items():
            for metric, estimate in info.metrics.items():
                rows.append((index, task, metric, estimate, info.failed))
    return rows


def scores_section(runs: Sequence[ReportRun]) -> str:
    several = len(runs) > 1
    rows = sorted(_score_rows(runs), key=lambda r: (r[1], r[2], r[0])) if several else _score_rows(runs)
    header = (["run"] if several else []) + [
        "task", "metric", "score", "95% CI", "SE", "n", "clusters", "method", "failed",
    ]  # fmt: skip
    html_rows = []
    for index, task, metric, est, failed in rows:
        run_cell = f"<td>{index + 1}</td>" if several else ""
        html_rows.append(
            f"<tr class='score' data-run='{index}' data-task='{escape(task)}' data-metric='{escape(metric)}'>"
            f"{run_cell}<td>{escape(task)}</td><td>{escape(metric)}</td>"
            + _cell(est.value, "value")
            + _ci(est.ci_low, est.ci_high)
            + _cell(est.se, "se")
            + _cell(est.n, "n")
            + _cell(est.n_clusters, "n_clusters")
            + _cell(est.method, "method")
            + _cell(failed, "failed")
            + "</tr>"
        )
    errors = [
        f"<li>{escape(t)}: {escape(i.error)}</li>" for run in runs for t, i in run.tasks.items() if i.error
    ] + [
        f"<li>{escape(t)}: no sample produced {escape(', '.join(i.missing_metrics))}</li>"
        for run in runs
        for t, i in run.tasks.items()
        if i.missing_metrics
    ]
    forest = [
        ForestRow(
            f"{task} · {metric}" if (not several or index == 0) else "",
            est.value,
            est.ci_low,
            est.ci_high,
            series=index,
            note=f"{fmt(est.value)} [{fmt(est.ci_low)}, {fmt(est.ci_high)}]",
        )
        for index, task, metric, est, _ in rows
    ]
    return (
        "<h2>Scores</h2>"
        + _table(header, html_rows, attrs=" id='scores'")
        + (f"<ul class='errors'>{''.join(errors)}</ul>" if errors else "")
        + "<h3>Scores with 95% intervals</h3>"
        + (_legend(runs) if several else "")
        + forest_plot(forest, axis_label="score")
        + (_trend(runs) if len(runs) >= 3 else "")
    )


def _trend(runs: Sequence[ReportRun]) -> str:
    """Several runs read as a sequence (checkpoints over training): each task's first metric
    as a line over the runs, in the order given, with its interval as a band."""
    names = sorted({task for run in runs for task in run.tasks})
    series = []
    for task in names:
        metric = next((m for run in runs if (m := run.primary_metric(task))), None)
        if metric is None:
            continue
        points = []
        for run in runs:
            info = run.tasks.get(task)
            est = info.metrics.get(metric) if info is not None else None
            points.append((est.value, est.ci_low, est.ci_high) if est is not None else (None, None, None))
        series.append(Series(f"{task} · {metric}", points))
    labels = [f"{i + 1}: {run.path.name}" for i, run in enumerate(runs)]
    return "<h3>Across runs (in the order given)</h3>" + line_plot(series, labels)


def _legend(runs: Sequence[ReportRun]) -> str:
    items = "".join(
        f"<span><i style='background:{PALETTE[i % len(PALETTE)]}'></i>{i + 1}: {escape(r.label)}</span>"
        for i, r in enumerate(runs)
    )
    return f"<div class='legend'>{items}</div>"


def comparison_section(comparison: ComparisonResult | None) -> str:
    if comparison is None:
        return ""
    title = f"<h2>Paired comparison with baseline {escape(comparison.baseline_model or '?')}</h2>"
    if comparison.error:
        return title + f"<p>not compared: {escape(comparison.error)}</p>"
    header = ["task", "metric", "current", "baseline", "diff", "95% CI", "p", "p (Holm)", "n", "RR/R-/-R/--"]
    rows, forest = [], []
    for task, c in comparison.tasks.items():
        a = c.agreement
        agree = f"{a.both_right}/{a.only_current}/{a.only_baseline}/{a.both_wrong}" if a else "-"
        rows.append(
            f"<tr class='diff' data-task='{escape(task)}'><td>{escape(task)}</td><td>{escape(c.metric)}</td>"
            + _cell(c.current, "current")
            + _cell(c.baseline, "baseline")
            + _cell(c.diff, "diff")
            + _ci(c.ci_low, c.ci_high)
            + _cell(c.p_value, "p_value")
            + _cell(c.p_holm, "p_holm")
            + _cell(c.n, "n")
            + f"<td>{escape(agree)}</td></tr>"
        )
        forest.append(
            ForestRow(
                f"{task} · {c.metric}",
                c.diff,
                c.ci_low,
                c.ci_high,
                note=f"{fmt(c.diff)}, p (Holm) {fmt(c.p_holm)}",
            )
        )
    return (
        title
        + "<p class='muted'>current - baseline on the documents both runs scored; p of the paired t test "
        + "(cluster-robust where the task clusters), Holm-adjusted across tasks.</p>"
        + _table(header, rows, attrs=" id='comparison'")
        + "<h3>Paired differences with 95% intervals</h3>"
        + forest_plot(forest, reference=0.0, axis_label="difference (current - baseline)")
    )


def gates_section(run: ReportRun) -> str:
    gates = run.document.gates
    configured = list(gates.fail_under)
    if gates.fail_on_regression is not None:
        configured.append(f"fail on regression (margin {gates.fail_on_regression})")
    failures = gates.failures
    if not configured and not failures:
        return ""
    badge = "<span class='badge bad'>failed</span>" if failures else "<span class='badge ok'>passed</span>"
    items = "".join(f"<li>{escape(f.gate)}: {escape(f.message)}</li>" for f in failures)
    return (
        f"<h2>Gates</h2><p id='gates'>{badge} gates: {escape('; '.join(map(str, configured)) or '-')}</p>"
        + (f"<ul>{items}</ul>" if items else "")
    )


def flips_section(flipped: Mapping[tuple[str, str], str], baseline: ReportRun | None) -> str:
    if baseline is None:
        return ""
    worse = sorted(doc for doc, kind in flipped.items() if kind == "worse")
    better = sorted(doc for doc, kind in flipped.items() if kind == "better")

    def listing(docs: list[tuple[str, str]], cls: str) -> str:
        if not docs:
            return "<p class='muted'>none</p>"
        shown = ", ".join(f"{escape(t)}/{escape(d)}" for t, d in docs[:300])
        more = f" … and {len(docs) - 300} more (see the sample browser)" if len(docs) > 300 else ""
        return f"<p class='flip {cls}'>{shown}{more}</p>"

    return (
        f"<h2>Flipped samples against {escape(baseline.label)}</h2>"
        f"<h3>right before, wrong now ({len(worse)})</h3>{listing(worse, 'worse')}"
        f"<h3>wrong before, right now ({len(better)})</h3>{listing(better, 'better')}"
    )


def stability_section(run: ReportRun) -> str:
    stable = {t: i.stability for t, i in run.tasks.items() if i.stability is not None}
    if not stable:
        return ""
    header = ["task", "metric", "k", "questions", "EA", "CA", "IV", "CR", "highest IV (doc: variance)"]
    rows = []
    for task, s in stable.items():
        top = ", ".join(f"{h.doc_id}: {h.variance:.3f}" for h in s.highest_internal_variance[:10])
        rows.append(
            f"<tr><td>{escape(task)}</td><td>{escape(s.metric)}</td>"
            + _cell(s.k)
            + _cell(s.n_questions)
            + _cell(s.expected_accuracy)
            + _cell(s.consensus_accuracy)
            + _cell(s.internal_variance)
            + _cell(s.consistency_rate)
            + f"<td>{escape(top)}</td></tr>"
        )
    return (
        "<h2>Stability over repeats</h2><p class='muted'>EA expected accuracy, CA consensus accuracy, "
        "IV internal variance, CR consistency rate.</p>" + _table(header, rows, attrs=" id='stability'")
    )


THROUGHPUT_FIELDS = (
    "samples", "cached", "model_calls", "samples_per_s", "output_tokens_per_s",
    "latency_p50_s", "latency_p95_s", "ttft_p50_s", "ttft_p95_s",
)  # fmt: skip


def throughput_section(runs: Sequence[ReportRun]) -> str:
    header = [
        "run", "task", "samples", "cached", "model calls", "samples/s", "output tokens/s",
        "latency p50 s", "latency p95 s", "TTFT p50 s", "TTFT p95 s",
    ]  # fmt: skip
    rows = []
    for index, run in enumerate(runs):
        scopes = [("all", run.document.throughput)]
        scopes += [(t, i.throughput) for t, i in run.tasks.items()]
        for name, t in scopes:
            if t is None:
                continue
            rows.append(
                f"<tr><td>{index + 1}</td><td>{escape(name)}</td>"
                + "".join(_cell(getattr(t, k), digits=3) for k in THROUGHPUT_FIELDS)
                + "</tr>"
            )
    return "<h2>Throughput and latency</h2>" + _table(header, rows) if rows else ""


def judge_section(run: ReportRun) -> str:
    judge = run.document.judge
    used = {t: i.judge for t, i in run.tasks.items() if i.judge is not None}
    if judge is None and not used:
        return ""
    model = judge.model if judge is not None else "?"
    rows = [
        f"<tr><td>{escape(t)}</td>{_cell(u.samples)}{_cell(run.tasks[t].n)}{_cell(u.calls)}</tr>"
        for t, u in used.items()
    ]
    prompts = ", ".join(sorted(judge.prompts if judge is not None else {}))
    return f"<h2>Judge</h2>{_kv([('model', model), ('prompts', prompts)])}" + _table(
        ["task", "samples judged", "samples", "judge calls"], rows
    )


def browser_section(run: ReportRun, browser: Mapping[str, Any]) -> str:
    tasks = "".join(f"<option value='{escape(t)}'>{escape(t)}</option>" for t in sorted(run.tasks))
    notes = "".join(f"<li>{escape(n)}</li>" for n in browser.get("notes") or [])
    return (
        f"<h2>Samples of {escape(run.label)}</h2>"
        + (f"<ul class='muted'>{notes}</ul>" if notes else "")
        + "<div class='filters'>"
        + f"<label>task <select id='f-task'><option value=''>all</option>{tasks}</select></label>"
        + "<label>status <select id='f-status'><option value=''>all</option><option value='right'>right</option>"
        + "<option value='wrong'>wrong</option><option value='failed'>failed</option>"
        + "<option value='unscored'>unscored</option></select></label>"
        + "<label>baseline <select id='f-flip'><option value=''>any</option>"
        + "<option value='flipped'>flipped</option><option value='worse'>right → wrong</option>"
        + "<option value='better'>wrong → right</option></select></label>"
        + "<label><input type='checkbox' id='f-var'> high variance</label>"
        + "<input type='search' id='f-search' placeholder='search prompt, response, target, id'>"
        + "<span id='sample-count' class='muted'></span></div>"
        + _table(["task", "document", "status", "vs baseline", "score", "response", "target"], []).replace(
            "<tbody>", "<tbody id='samples'>"
        )
        + "<button id='more' class='more' hidden>show more</button>"
    )
