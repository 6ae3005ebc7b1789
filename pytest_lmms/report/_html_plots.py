"""Hand-written SVG plots for the HTML report (no plotting library, nothing fetched)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

# one colour per run, readable on white and distinguishable for the common colour blindnesses
PALETTE = ("#1f5fa8", "#d4720b", "#2a8a4a", "#b2368f", "#6b5b95", "#8c6d31", "#3a8fb7", "#c23b22")


@dataclass(frozen=True)
class ForestRow:
    """One estimate: a point with its interval; ``series`` picks the colour (the run)."""

    label: str
    value: float | None
    low: float | None
    high: float | None
    series: int = 0
    note: str = ""


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick positions covering [low, high] (steps of 1, 2 or 5 times a power of ten)."""
    span = high - low
    if span <= 0:
        return [low]
    raw = span / max(1, count - 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    return ticks


def _domain(rows: Sequence[ForestRow], reference: float | None) -> tuple[float, float]:
    values = [float(x) for r in rows for x in (r.value, r.low, r.high) if x is not None and math.isfinite(x)]
    if reference is not None:
        values.append(reference)
    if not values:
        return 0.0, 1.0
    low, high = min(values), max(values)
    pad = (high - low) * 0.05 or 0.05
    return low - pad, high + pad


def forest_plot(
    rows: Sequence[ForestRow], *, reference: float | None = None, axis_label: str = "", width: int = 820
) -> str:
    """Points with interval whiskers, one row each, a shared axis and an optional
    reference line (0 for differences)."""
    label_w, note_w, row_h, top, bottom = 250, 170, 22, 10, 40
    plot_w = width - label_w - note_w
    height = top + row_h * max(1, len(rows)) + bottom
    low, high = _domain(rows, reference)

    def x(value: float) -> float:
        return label_w + (value - low) / (high - low) * plot_w

    out = [
        f'<svg class="forest" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img">'
    ]
    axis_y = top + row_h * max(1, len(rows))
    for tick in nice_ticks(low, high):
        tx = x(tick)
        out.append(f'<line x1="{tx:.1f}" y1="{top}" x2="{tx:.1f}" y2="{axis_y}" class="grid"/>')
        out.append(f'<text x="{tx:.1f}" y="{axis_y + 14}" class="tick">{tick:g}</text>')
    if reference is not None:
        rx = x(reference)
        out.append(f'<line x1="{rx:.1f}" y1="{top}" x2="{rx:.1f}" y2="{axis_y}" class="ref"/>')
    out.append(f'<line x1="{label_w}" y1="{axis_y}" x2="{label_w + plot_w}" y2="{axis_y}" class="axis"/>')
    if axis_label:
        out.append(
            f'<text x="{label_w + plot_w / 2:.1f}" y="{axis_y + 32}" class="axislabel">{escape(axis_label)}</text>'
        )
    for index, row in enumerate(rows):
        out.append(_row(row, top + row_h * index + row_h / 2, x, label_w, plot_w))
    out.append("</svg>")
    return "".join(out)


def _row(row: ForestRow, y: float, x: Callable[[float], float], label_w: int, plot_w: int) -> str:
    colour = PALETTE[row.series % len(PALETTE)]
    parts = [f'<g class="frow"><title>{escape(row.label)}: {escape(row.note)}</title>']
    parts.append(
        f'<text x="{label_w - 8}" y="{y + 4:.1f}" class="rlabel">{escape(_clip(row.label, 38))}</text>'
    )
    if _finite(row.low) and _finite(row.high):
        assert row.low is not None and row.high is not None
        x1, x2 = x(row.low), x(row.high)
        parts.append(
            f'<line x1="{x1:.1f}" y1="{y:.1f}" x2="{x2:.1f}" y2="{y:.1f}" stroke="{colour}" stroke-width="2"/>'
        )
        for end in (x1, x2):
            parts.append(
                f'<line x1="{end:.1f}" y1="{y - 4:.1f}" x2="{end:.1f}" y2="{y + 4:.1f}" stroke="{colour}"/>'
            )
    if row.value is not None and _finite(row.value):
        parts.append(f'<circle cx="{x(row.value):.1f}" cy="{y:.1f}" r="4" fill="{colour}"/>')
    parts.append(f'<text x="{label_w + plot_w + 8}" y="{y + 4:.1f}" class="rnote">{escape(row.note)}</text>')
    parts.append("</g>")
    return "".join(parts)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class Series:
    """One metric across runs (checkpoints, in the order given): points with interval bands."""

    label: str
    points: Sequence[tuple[float | None, float | None, float | None]]  # (value, low, high) per run


def line_plot(
    series: Sequence[Series], x_labels: Sequence[str], *, width: int = 820, height: int = 300
) -> str:
    """Each series as a line over the runs with its 95% interval as a shaded band."""
    left, right, top, bottom = 60, 200, 12, 46
    plot_w, plot_h = width - left - right, height - top - bottom
    rows = [ForestRow("", v, lo, hi) for s in series for v, lo, hi in s.points]
    low, high = _domain(rows, None)
    steps = max(1, len(x_labels) - 1)

    def x(i: int) -> float:
        return left + plot_w * i / steps

    def y(v: float) -> float:
        return top + plot_h * (1 - (v - low) / (high - low))

    out = [
        f'<svg class="lines" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img">'
    ]
    for tick in nice_ticks(low, high):
        out.append(
            f'<line x1="{left}" y1="{y(tick):.1f}" x2="{left + plot_w}" y2="{y(tick):.1f}" class="grid"/>'
        )
        out.append(f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" class="ytick">{tick:g}</text>')
    for i, label in enumerate(x_labels):
        out.append(
            f'<text x="{x(i):.1f}" y="{top + plot_h + 16}" class="tick">{escape(_clip(label, 18))}</text>'
        )
    for index, s in enumerate(series):
        out.append(_series(s, PALETTE[index % len(PALETTE)], x, y))
        last = next((v for v, _, _ in reversed(s.points) if v is not None and math.isfinite(v)), None)
        if last is not None:
            out.append(
                f'<text x="{left + plot_w + 8}" y="{y(last) + 4:.1f}" fill="{PALETTE[index % len(PALETTE)]}">'
                f"{escape(_clip(s.label, 30))}</text>"
            )
    out.append("</svg>")
    return "".join(out)


def _series(s: Series, colour: str, x: Callable[[int], float], y: Callable[[float], float]) -> str:
    band = [(i, lo, hi) for i, (_, lo, hi) in enumerate(s.points) if _finite(lo) and _finite(hi)]
    parts = []
    if len(band) >= 2:
        upper = " ".join(f"{x(i):.1f},{y(hi):.1f}" for i, _, hi in band)  # type: ignore[arg-type]
        lower = " ".join(f"{x(i):.1f},{y(lo):.1f}" for i, lo, _ in reversed(band))  # type: ignore[arg-type]
        parts.append(f'<polygon points="{upper} {lower}" fill="{colour}" fill-opacity="0.15" stroke="none"/>')
    line = [(i, v) for i, (v, _, _) in enumerate(s.points) if v is not None and math.isfinite(v)]
    if len(line) >= 2:
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in line)
        parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>')
    for i, v in line:
        parts.append(
            f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" fill="{colour}"><title>{v:.4f}</title></circle>'
        )
    return "<g>" + "".join(parts) + "</g>"
