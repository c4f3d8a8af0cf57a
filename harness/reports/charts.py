"""Inline SVG line charts for the self-contained HTML report.

No JavaScript and no external files: the report must open offline, in a mail
attachment, in a ticket. A chart is a plain ``<svg>`` with one ``<polyline>``
per series; each carries ``data-series`` and ``data-points`` so tests (and
curious users) can check what was drawn. The report draws one chart per
metric with one line per circuit (old and new on the same axes), shades
outages red and the hours without any measurement grey (``rect.gap``, each
with a ``<title>`` naming the span), and draws the daily pass rate as grouped
bars (:func:`bar_chart`). The x axis is the report's window, not the data's
extent: a week with two days of data shows five empty days.

Long histories are bucketed to at most :data:`MAX_POINTS` points per series.
Each point is the *worst* value in its bucket (highest delay/jitter/loss,
lowest throughput/MOS), so a five-minute outage in a 30-day chart stays
visible instead of being averaged away.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
from dataclasses import dataclass
from html import escape
from typing import Sequence

MAX_POINTS = 360
WIDTH, HEIGHT = 560, 190
PAD_L, PAD_R, PAD_T, PAD_B = 52, 12, 26, 30
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")

Point = tuple[dt.datetime, float]


@dataclass
class Series:
    name: str
    points: Sequence[Point]
    colour: str | None = None


def downsample(points: Sequence[Point], max_points: int = MAX_POINTS, worst_is_high: bool = True,
               start: dt.datetime | None = None, end: dt.datetime | None = None) -> list[Point]:
    """At most ``max_points`` points: the worst value of each equal time bucket
    (points sorted by time; bucket edges found by bisection, worst by max/min)."""
    if len(points) <= max_points:
        return list(points)
    ts = [t.timestamp() for t, _ in points]
    vals = [v for _, v in points]
    t0 = (start or points[0][0]).timestamp()
    t1 = (end or points[-1][0]).timestamp()
    width = max((t1 - t0) / max_points, 1e-9)
    pick = max if worst_is_high else min
    out: list[Point] = []
    lo = 0
    for b in range(1, max_points + 1):
        hi = len(ts) if b == max_points else bisect.bisect_left(ts, t0 + b * width, lo)
        if hi > lo:
            worst = pick(vals[lo:hi])
            out.append(points[vals.index(worst, lo, hi)])
            lo = hi
    return out


def nice_ticks(lo: float, hi: float, count: int = 4) -> list[float]:
    """Round tick values covering [lo, hi] (1, 2, 2.5, 5 x 10^n steps)."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(s * mag for s in (1, 2, 2.5, 5, 10) if s * mag >= raw)
    first = math.floor(lo / step) * step
    ticks = []
    v = first
    for _ in range(count + 3):
        ticks.append(round(v, 10))
        if v >= hi:
            break
        v += step
    return ticks


def time_ticks(start: dt.datetime, end: dt.datetime) -> list[tuple[dt.datetime, str, str]]:
    """x-axis labels: over more than 3 days, UTC midnights (every n-th day, at
    most 7 labels) so the days read evenly; otherwise 5 evenly spaced times."""
    span_s = (end - start).total_seconds()
    if span_s > 3 * 86400:
        step = math.ceil(span_s / 86400 / 7)
        day = (start + dt.timedelta(days=1)).astimezone(dt.timezone.utc).replace(hour=0, minute=0, second=0,
                                                                                 microsecond=0)
        out = []
        while day <= end:
            out.append((day, day.strftime("%m-%d"), "middle"))
            day += dt.timedelta(days=step)
        return out
    return [(start + (end - start) * k / 4, (start + (end - start) * k / 4).strftime("%m-%d %H:%M"),
             "start" if k == 0 else "end" if k == 4 else "middle") for k in range(5)]


def _fmt_tick(v: float) -> str:
    return f"{v:g}" if abs(v) >= 0.01 or v == 0 else f"{v:.3f}"


def line_chart(title: str, unit: str, series: Sequence[Series], *, start: dt.datetime, end: dt.datetime,
               limit: float | None = None, limit_label: str = "", worst_is_high: bool = True,
               shade: Sequence[tuple[dt.datetime, dt.datetime] | tuple[dt.datetime, dt.datetime, str]] = (),
               css_id: str = "",
               data_attrs: dict[str, str] | None = None,
               gaps: Sequence[tuple[dt.datetime, dt.datetime, str]] = ()) -> str:
    """One chart. ``limit`` draws a dashed threshold line when it fits the
    scale (a limit far above the data would flatten it; then the legend says
    so). ``shade`` marks time spans (outages: start, end[, label]) in translucent red; ``gaps``
    (start, end, label) marks spans without measurements in grey."""
    plot_w, plot_h = WIDTH - PAD_L - PAD_R, HEIGHT - PAD_T - PAD_B
    drawn = [(s, downsample(s.points, worst_is_high=worst_is_high, start=start, end=end)) for s in series]
    values = [v for _, pts in drawn for _, v in pts]
    attrs = " ".join(f'data-{escape(k)}="{escape(str(v))}"' for k, v in (data_attrs or {}).items())
    head = (f'<svg class="chart" {attrs} {f"id={chr(34)}{escape(css_id)}{chr(34)}" if css_id else ""} '
            f'xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
            f'height="{HEIGHT}" role="img" aria-label="{escape(title)}">'
            f'<title>{escape(title)}</title>'
            f'<text x="{PAD_L}" y="16" class="ct">{escape(title)}{f" ({escape(unit)})" if unit else ""}</text>')
    if not values:
        return (head + f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" class="na">'
                "not measured in this window</text></svg>")
    lo, hi = min(values), max(values)
    lo = min(lo, 0.0) if lo >= 0 else lo
    shown_limit = limit if limit is not None and limit <= 2 * max(hi, 1e-9) else None   # None: off scale
    if shown_limit is not None:
        hi = max(hi, shown_limit)
    ticks = nice_ticks(lo, hi * 1.05 if hi > 0 else hi + 1)
    y_lo, y_hi = ticks[0], ticks[-1]
    t0, t1 = start.timestamp(), max(end.timestamp(), start.timestamp() + 1)

    def x(t: dt.datetime) -> float:
        return PAD_L + (t.timestamp() - t0) / (t1 - t0) * plot_w

    def y(v: float) -> float:
        return PAD_T + plot_h - (v - y_lo) / (y_hi - y_lo) * plot_h

    parts = [head]
    for a, b, label in gaps:
        xa, xb = max(PAD_L, x(a)), min(PAD_L + plot_w, x(b))
        if xb >= xa:
            parts.append(f'<rect class="gap" x="{xa:.1f}" y="{PAD_T}" width="{max(xb - xa, 1.5):.1f}" '
                         f'height="{plot_h}"><title>{escape(label)}</title></rect>')
    for a, b, *shade_label in shade:
        xa, xb = max(PAD_L, x(a)), min(PAD_L + plot_w, x(b))
        if xb >= xa:
            tip = f"<title>{escape(shade_label[0])}</title>" if shade_label else ""
            parts.append(f'<rect class="outage" x="{xa:.1f}" y="{PAD_T}" width="{max(xb - xa, 1.5):.1f}" '
                         f'height="{plot_h}">{tip}</rect>')
    for v in ticks:
        parts.append(f'<line class="grid" x1="{PAD_L}" x2="{PAD_L + plot_w}" y1="{y(v):.1f}" y2="{y(v):.1f}"/>'
                     f'<text class="tick" x="{PAD_L - 4}" y="{y(v) + 3:.1f}" text-anchor="end">{_fmt_tick(v)}</text>')
    for t, label, anchor in time_ticks(start, dt.datetime.fromtimestamp(t1, dt.timezone.utc)):
        parts.append(f'<text class="tick" x="{x(t):.1f}" y="{HEIGHT - 10}" text-anchor="{anchor}">{label}</text>')
    if shown_limit is not None:
        parts.append(f'<line class="limit" x1="{PAD_L}" x2="{PAD_L + plot_w}" y1="{y(shown_limit):.1f}" '
                     f'y2="{y(shown_limit):.1f}"/>')
    legend_x: float = PAD_L + plot_w
    for i, (s, pts) in enumerate(drawn):
        colour = s.colour or COLOURS[i % len(COLOURS)]
        coords = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in pts)
        parts.append(f'<polyline class="series" data-series="{escape(s.name)}" data-points="{len(pts)}" '
                     f'fill="none" stroke="{colour}" stroke-width="1.3" points="{coords}"/>')
        if len(pts) <= 60:        # few runs yet (a first check): mark each one, a lone point has no line
            parts.append("".join(f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="2.2" fill="{colour}"/>'
                                 for t, v in pts))
    legend = [(s.name, s.colour or COLOURS[i % len(COLOURS)]) for i, (s, _) in enumerate(drawn)]
    if limit is not None:
        legend.append((f"{limit_label or 'limit'} {_fmt_tick(limit)}{' (off scale)' if shown_limit is None else ''}",
                       "#888"))
    return _close(parts, legend, legend_x)


def bar_chart(title: str, days: Sequence[dt.date], groups: Sequence[tuple[str, str, dict]], *,
              target: float | None = None, data_attrs: dict[str, str] | None = None) -> str:
    """Grouped bars, 0..100 %: one group per day, one bar per (name, colour,
    {day: pct}) group; a day a circuit was not measured has no bar (not a
    zero). ``target`` is drawn dashed (the profile's pass rate). Each bar is a
    ``rect.daybar`` (not .bar: the page's CSS sizes .bar) with ``data-series``, ``data-day`` and ``data-pct``."""
    width = max(WIDTH, min(1150, PAD_L + PAD_R + 16 * len(days) * max(1, len(groups))))   # fits the page
    plot_w, plot_h = width - PAD_L - PAD_R, HEIGHT - PAD_T - PAD_B
    attrs = " ".join(f'data-{escape(k)}="{escape(str(v))}"' for k, v in (data_attrs or {}).items())
    parts = [f'<svg class="chart bars" {attrs} xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {HEIGHT}" '
             f'width="{width}" height="{HEIGHT}" role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>'
             f'<text x="{PAD_L}" y="16" class="ct">{escape(title)} (%)</text>']

    def y(v: float) -> float:
        return PAD_T + plot_h - v / 100.0 * plot_h

    for tick in (0, 25, 50, 75, 100):
        parts.append(f'<line class="grid" x1="{PAD_L}" x2="{PAD_L + plot_w}" y1="{y(tick):.1f}" y2="{y(tick):.1f}"/>'
                     f'<text class="tick" x="{PAD_L - 4}" y="{y(tick) + 3:.1f}" text-anchor="end">{tick}</text>')
    slot = plot_w / max(1, len(days))
    bar_w = max(1.0, (slot - 4) / max(1, len(groups)))
    label_every = max(1, math.ceil(len(days) / 10))
    for i, day in enumerate(days):
        x0 = PAD_L + i * slot + 2
        for j, (name, colour, values) in enumerate(groups):
            v = values.get(day)
            if v is None:
                continue
            parts.append(f'<rect class="daybar" data-series="{escape(name)}" data-day="{day.isoformat()}" '
                         f'data-pct="{v:.1f}" x="{x0 + j * bar_w:.1f}" y="{y(v):.1f}" width="{bar_w:.1f}" '
                         f'height="{y(0) - y(v):.1f}" fill="{colour}"><title>{escape(name)} {day.isoformat()}: '
                         f'{v:.1f} %</title></rect>')
        if i % label_every == 0:
            parts.append(f'<text class="tick" x="{x0 + slot / 2 - 2:.1f}" y="{HEIGHT - 10}" '
                         f'text-anchor="middle">{day.strftime("%m-%d")}</text>')
    if target is not None:
        parts.append(f'<line class="limit" x1="{PAD_L}" x2="{PAD_L + plot_w}" y1="{y(target):.1f}" '
                     f'y2="{y(target):.1f}"/>')
    legend = [(name, colour) for name, colour, _ in groups]
    if target is not None:
        legend.append((f"target {_fmt_tick(target)}", "#888"))
    legend_x: float = PAD_L + plot_w
    return _close(parts, legend, legend_x)


def _close(parts: list[str], legend: list[tuple[str, str]], legend_x: float) -> str:
    """The legend, right-aligned from ``legend_x`` leftwards, and the end of the SVG."""
    for name, colour in reversed(legend):
        parts.append(f'<text class="lg" x="{legend_x:.1f}" y="16" text-anchor="end" fill="{colour}">'
                     f'{escape(name)}</text>')
        legend_x -= 12 + 6.4 * len(name)
    parts.append("</svg>")
    return "".join(parts)
