"""Simple bar charts as inline SVG: no script, nothing fetched, readable when printed. A suppressed
figure gets no bar and is labelled `*` (withheld), never drawn as zero."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from cagnet.actions.tables import SUPPRESSED, ResultTable, chart_series

__all__ = ["bar_chart", "result_chart"]

_BAR = 18
_GAP = 6
_LABEL = 220
_PLOT = 420


def _figure(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.2f}"


def bar_chart(title: str, points: Sequence[tuple[str, float | None]]) -> str:
    """Horizontal bars, one per (label, value); negative values run left of the axis."""
    values = [v for _, v in points if v is not None]
    low, high = min([0.0, *values]), max([0.0, *values])
    span = (high - low) or 1.0
    zero = _LABEL + _PLOT * (-low / span)
    height = len(points) * (_BAR + _GAP) + 30
    width = _LABEL + _PLOT + 90
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" width="{width}" height="{height}"'
        f' viewBox="0 0 {width} {height}" aria-label="{escape(title)}">',
        f'<text x="0" y="14" class="chart-title">{escape(title)}</text>',
    ]
    for i, (label, value) in enumerate(points):
        y = 24 + i * (_BAR + _GAP)
        parts.append(f'<text x="{_LABEL - 6}" y="{y + _BAR - 5}" text-anchor="end">{escape(label[:34])}</text>')
        if value is None:
            parts.append(f'<text x="{zero + 4:.1f}" y="{y + _BAR - 5}" class="withheld">{SUPPRESSED} withheld</text>')
            continue
        length = _PLOT * abs(value) / span
        x = zero if value >= 0 else zero - length
        parts.append(f'<rect x="{x:.1f}" y="{y}" width="{max(length, 1):.1f}" height="{_BAR}" class="bar"/>')
        parts.append(
            f'<text x="{x + length + 4 if value >= 0 else zero + 4:.1f}" y="{y + _BAR - 5}">{_figure(value)}</text>'
        )
    parts.append(f'<line x1="{zero:.1f}" y1="20" x2="{zero:.1f}" y2="{height - 4}" class="axis"/>')
    parts.append("</svg>")
    return "".join(parts)


def result_chart(tables: Sequence[ResultTable]) -> str:
    """The chart of a result's most telling figure, or "" when it has none to draw."""
    series = chart_series(tables)
    if series is None:
        return ""
    table, column, points = series
    return bar_chart(f"{column} ({table.title.split(': ', 1)[-1]}, {table.period})", points)
