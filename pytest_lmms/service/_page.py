"""The page served at ``/``: every job with its state and, when done, each task's primary
metric with its 95% interval. One self-contained HTML document (no scripts, no external
assets); it refreshes itself every few seconds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from pytest_lmms.service._store import Job

_STYLE = """
body { font: 14px system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; }
th, td { padding: 4px 10px; border-bottom: 1px solid #ddd; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
.state-done { color: #186a1e; } .state-failed { color: #a31515; } .state-running { color: #1f4fa3; }
.state-cancelled, .state-interrupted { color: #8a6d00; }
code { font-size: 12px; }
"""


def score_lines(results: Mapping[str, Any] | None) -> list[str]:
    """'task metric value [ci_low, ci_high]' for each task's primary metric."""
    if not results:
        return []
    lines = []
    for task, info in sorted((results.get("tasks") or {}).items()):
        metrics = info.get("metrics") or {}
        name = info.get("primary_metric") or next(iter(metrics), None)
        block = metrics.get(name) if name else None
        if not block or block.get("value") is None:
            lines.append(f"{task}: -")
            continue
        interval = ""
        if block.get("ci_low") is not None and block.get("ci_high") is not None:
            interval = f" [{block['ci_low']:.4f}, {block['ci_high']:.4f}]"
        lines.append(f"{task} {name} {block['value']:.4f}{interval} (n={block.get('n', '?')})")
    return lines


def _row(job: Job, samples_done: int) -> str:
    scores = "<br>".join(escape(line) for line in score_lines(job.results)) or "-"
    return (
        f"<tr><td><code>{escape(job.id)}</code></td>"
        f"<td class='state-{escape(job.state)}'>{escape(job.state)}</td>"
        f"<td>{escape(job.model)}</td><td>{escape(', '.join(job.spec.get('tasks', [])))}</td>"
        f"<td>{escape(', '.join(job.tags)) or '-'}</td><td>{escape(','.join(map(str, job.gpus))) or '-'}</td>"
        f"<td>{samples_done}</td><td>{scores}</td></tr>"
    )


def jobs_page(jobs: Sequence[tuple[Job, int]]) -> str:
    rows = "\n".join(_row(job, done) for job, done in reversed(jobs)) or (
        "<tr><td colspan='8'>no jobs yet</td></tr>"
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        "<meta http-equiv='refresh' content='5'><title>pytest-lmms jobs</title>"
        f"<style>{_STYLE}</style></head><body><h1>pytest-lmms jobs</h1>"
        "<table><tr><th>job</th><th>state</th><th>model</th><th>tasks</th><th>tags</th><th>GPUs</th>"
        f"<th>samples</th><th>scores (95% CI)</th></tr>\n{rows}\n</table></body></html>"
    )
