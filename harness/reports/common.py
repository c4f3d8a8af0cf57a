"""Formatting shared by the Markdown and HTML reports."""

from __future__ import annotations

import datetime as dt

from harness.durations import format_duration
from harness.verdicts import fmt

# What each report's "latest values" table shows, in order: (label, metric keys joined by " / ")
LATEST_COLUMNS = (
    ("RTT p50 (ms)", ("rtt_p50_ms",)),
    ("Jitter up / down (ms)", ("jitter_up_ms", "jitter_down_ms")),
    ("Loss up / down (%)", ("loss_up_pct", "loss_down_pct")),
    ("MOS", ("mos",)),
    ("Down / up (Mbit/s)", ("down_mbps", "up_mbps")),
    ("Capacity (calls)", ("capacity_calls",)),
)


def when(t: dt.datetime | None) -> str:
    """UTC timestamp as people read it in a report: 2026-11-03 14:05 UTC."""
    if t is None:
        return "-"
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def pct(x: float | None) -> str:
    return "-" if x is None else f"{fmt(x)} %"


def dur(seconds: float) -> str:
    return format_duration(dt.timedelta(seconds=seconds))


def latest_cell(ch, keys) -> str:
    vals = [ch.metrics[k].latest if k in ch.metrics else None for k in keys]
    if all(v is None for v in vals):
        return "-"
    return " / ".join(fmt(v) if v is not None else "-" for v in vals)


def trend_text(s) -> str:
    if s.trend is None:
        return "-"
    if s.trend == "steady":
        return "steady"
    unit = f" {s.unit}" if s.unit else ""
    return f"{s.trend} ({'+' if (s.slope_per_day or 0) >= 0 else ''}{fmt(s.slope_per_day)}{unit}/day)"


def outage_end(o) -> str:
    return "ongoing" if o.ongoing else when(o.end)


def claim_text(o, hours: float) -> str:
    if o.claim_by is None:
        return f"ongoing: claim within {fmt(hours)} h of its end"
    return when(o.claim_by)


def what_failed(o, limit: int = 3) -> str:
    return o.summary if o.failed else o.kind


def daily_rows(a) -> list[list[str]]:
    """Daily pass rate table body: one row per day, one cell per circuit (plain text)."""
    days = sorted({d.date for ch in a.circuits.values() for d in ch.daily})
    per = {ch.name: {d.date: d for d in ch.daily} for ch in a.circuits.values()}
    rows = []
    for day in days:
        row = [day.isoformat()]
        for name in a.circuits:
            d = per[name].get(day)
            row.append(f"{fmt(d.pass_pct)} % ({d.passed}/{d.runs})" if d else "-")
        rows.append(row)
    return rows


CAUSE_TEXT = {"measurement_gap": "measurement gap", "internal_error": "internal error (a bug in cutover)"}


def status_cause(c) -> str:
    """'' for the network's problems and passes; ' (measurement gap)' or
    ' (internal error ...)' otherwise: whose problem a check is (harness.verdicts)."""
    label = CAUSE_TEXT.get(getattr(c, "cause", None) or "") if c.status != "pass" else None
    return f" ({label})" if label else ""


def coverage_line(ch) -> str:
    """One line: how much of the window was measured, and its holes by start and end."""
    cov = getattr(ch, "coverage", None)
    return f"{ch.name}: {cov.summary()}" if cov is not None else f"{ch.name}: coverage not computed"
