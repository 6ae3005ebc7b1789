"""The terminal summary table."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


def _fmt(x: float | None, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}f}"


def format_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Rows have task, metric, value, ci_low, ci_high, n, n_clusters, method, failed."""
    header = ["task", "metric", "score", "95% CI", "n", "clusters", "method", "failed"]
    lines = [header]
    for row in rows:
        ci = (
            f"[{_fmt(row['ci_low'])}, {_fmt(row['ci_high'])}]"
            if row.get("ci_low") is not None and not math.isnan(row["ci_low"])
            else "-"
        )
        lines.append(
            [
                str(row["task"]),
                str(row["metric"]),
                _fmt(row["value"]),
                ci,
                str(row["n"]),
                str(row["n_clusters"]) if row.get("n_clusters") else "-",
                str(row.get("method", "")),
                str(row.get("failed", 0)),
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for index, line in enumerate(lines):
        out.append("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
        if index == 0:
            out.append("  ".join("-" * width for width in widths))
    return out
