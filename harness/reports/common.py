"""Formatting shared by the Markdown and HTML reports (and the board's platform line).

The manager's summary, the platform table and the drill rows are built here
once, as plain text, so report.md, report.html, report.json and the board say
the same thing; each renderer only escapes for its medium. Nothing here
judges: verdicts come from the stored checks (harness.platforms.summarize),
the gate (harness.gate) and the history (harness.history)."""

from __future__ import annotations

import datetime as dt
import re

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
    """'worse (+2 ms/day)', 'steady', or why no trend is claimed (history.TREND_MIN_*)."""
    from harness.history import TREND_MIN_HOURS, TREND_MIN_SAMPLES
    if s.trend is None:
        if not s.count:
            return "-"
        return (f"too little data ({s.count} sample{'' if s.count == 1 else 's'} over "
                f"{dur(s.span_hours * 3600)}; a trend needs {TREND_MIN_SAMPLES} over {fmt(TREND_MIN_HOURS)} h)")
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


# ---------------------------------------------------------------- the manager's summary

CIRCUIT_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b")
MAX_BLOCKING_IN_SUMMARY = 3


def circuit_colours(a) -> dict[str, str]:
    """One colour per circuit, the same in every chart and legend."""
    return {n: CIRCUIT_COLOURS[i % len(CIRCUIT_COLOURS)] for i, n in enumerate(a.circuits)}


def platform_table(report) -> list[dict]:
    """Per call platform (the profile's planned.platforms first, then any other
    platform the stored checks judged): {platform, title, circuits: {name:
    PlatformSummary or None}} from each circuit's latest
    ``stream.platform.<platform>.<req>`` checks (harness.platforms.summarize:
    one judgement, never recomputed from figures)."""
    from harness.platforms import PLATFORMS, summarize
    per = {name: summarize(list(ch.latest_checks)) for name, ch in report.analysis.circuits.items()}
    planned = list(getattr(report.profile.planned, "platforms", []) or [])
    names = planned + sorted({p for s in per.values() for p in s} - set(planned))
    rows = []
    for p in names:
        title = PLATFORMS[p].title if p in PLATFORMS else p
        rows.append({"platform": p, "title": title, "planned": p in planned,
                     "circuits": {n: s.get(p) for n, s in per.items()}})
    return rows


def platform_cell(s) -> str:
    """'meets 6 of 6, score 74' / 'fails 1 of 6, score 40: <reason>' / 'not measured'."""
    if s is None:
        return "not measured"
    score = "" if s.score is None else f", score {s.score:.0f}"
    if s.meets:
        return f"meets {s.passed} of {s.total}{score}"
    why = "; ".join(f["reason"] or f["requirement"] for f in s.failed)
    return f"fails {len(s.failed)} of {s.total}{score}: {why}"


def platform_short(name: str, s) -> str:
    """The board's words for one platform: 'Teams: meets 6/6, score 74' (the profile's name, capitalised)."""
    title = name[:1].upper() + name[1:]
    if s is None:
        return f"{title}: not measured"
    score = "" if s.score is None else f", score {s.score:.0f}"
    verb = f"meets {s.total}/{s.total}" if s.meets else f"fails {len(s.failed)}/{s.total}"
    return f"{title}: {verb}{score}"


def platform_line(profile, latest_checks) -> str:
    """One line per circuit for the board: its planned platforms, 'Teams: meets 6/6, score 74 · Zoom: ...'
    ('' when the profile plans none)."""
    from harness.platforms import summarize
    planned = list(getattr(profile.planned, "platforms", []) or [])
    if not planned:
        return ""
    got = summarize(list(latest_checks))
    return " · ".join(platform_short(p, got.get(p)) for p in planned)


def drill_row(d: dict) -> list[str]:
    """One stored failover drill as table cells (harness.suite.failover.drill_summaries)."""
    def num(v, unit=""):
        return "-" if v is None else f"{fmt(v)}{unit}"
    changed = {True: "yes", False: "no", None: "-"}.get(d.get("source_changed"), "-")
    recovered = {True: "yes", False: "NO", None: "-"}.get(d.get("recovered"), "-")
    allowed = f" (allowed {fmt(d['allowed_ms'])})" if d.get("allowed_ms") is not None else ""
    return [when(d["at"]), d["circuit"], d.get("verdict") or "-", num(d.get("max_gap_ms"), " ms") + allowed,
            changed, recovered, num(d.get("recovery_s"), " s"),
            f"{num(d.get('mos_before'))} / {num(d.get('mos_after'))}"]


DRILL_HEAD = ["When", "Circuit", "Verdict", "Longest silence", "Source changed", "Recovered", "Recovery time",
              "MOS before / after"]


def _names(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def parallel_text(g) -> str:
    """'day 20, 0 of the 14 required days fully measured': calendar day and the
    measured days that count (the gate's covered days), never 'day 30 of 14'."""
    if g.parallel_days is None:
        return "not started"
    day = f"day {g.parallel_days}"
    if g.covered_days is None:
        return f"{day} of {g.min_parallel_days}"
    if g.covered_days < g.min_parallel_days:
        return f"{day}, {g.covered_days} of the {g.min_parallel_days} required days fully measured"
    return f"{day}, all {g.min_parallel_days} required days measured"


def _blocking_sentences(g) -> list[str]:
    """The gate's blocking items in its own order, in words: a checklist item
    by its title ('Voice VLAN configured and tagged' is not signed off), an
    automatic item by its detail (the gate's own figures)."""
    out = []
    for i in g.items:
        if i.status != "block":
            continue
        out.append(f"'{i.title}' is not signed off" if i.kind == "manual" else _no_ids(i.detail or i.title))
    return out or [_no_ids(b) for b in g.blocking]


_CHECK_ID = re.compile(r"\b[a-z][a-z0-9_]*(?:\.[a-z0-9_-]+)+: ")


def _no_ids(text: str) -> str:
    """'failed at 12:00: stream.mos: MOS 2 < 4' -> 'failed at 12:00: MOS 2 < 4' (a manager reads reasons)."""
    return _CHECK_ID.sub("", text)


def summary(report) -> list[str]:
    """The plain-language summary for a manager: whole sentences, no check ids.
    What is ready, what blocks (the gate's first blocking reasons), the dates,
    the measured coverage, each planned call platform, the last drill."""
    a, g = report.analysis, report.gate
    out: list[str] = []
    roles = {n: ch.role for n, ch in a.circuits.items()}
    new = [n for n, r in roles.items() if r == "new"] or list(a.circuits)
    ready = [n for n in new if a.circuits[n].latest_verdict in ("GO", "WARN")]
    failing = [n for n in new if a.circuits[n].latest_verdict not in (None, "GO", "WARN")]
    never = [n for n in new if a.circuits[n].latest_verdict is None]
    if g is not None and g.decision == "GO":
        out.append("The new service is ready: every condition for terminating the old service holds.")
    else:
        if ready:
            out.append(f"Ready: {_names(ready)} passed {'its' if len(ready) == 1 else 'their'} latest check.")
        if failing:
            out.append(f"Not ready: {_names(failing)} failed {'its' if len(failing) == 1 else 'their'} latest check.")
        if never:
            out.append(f"Not measured in this window: {_names(never)}.")
    blocks = _blocking_sentences(g) if g is not None else []
    if blocks:
        shown = blocks[:MAX_BLOCKING_IN_SUMMARY]
        more = len(blocks) - len(shown)
        out.append("The old service cannot be terminated yet because: " + "; ".join(
            b.rstrip(".") for b in shown) + (f" (and {more} more reason{'' if more == 1 else 's'}, listed below)."
                                            if more else "."))
    if g is not None:
        day = parallel_text(g)
        proven = (f"was proven on {g.proven_on.isoformat()}" if g.decision == "GO" else
                  f"can be proven on {g.proven_on.isoformat()} at the earliest")
        out.append(f"Parallel run: {day}. The new service {proven}; "
                   f"the termination notice must go out by {g.notice_by.isoformat()} for the old service to be "
                   f"disconnected on {g.disconnect_on.isoformat()}.")
    cov = []
    for n, ch in a.circuits.items():
        c = ch.coverage
        if c is None or not c.slots:
            continue
        part = f"{n} {fmt(100.0 - (c.uncovered_pct or 0.0))} % of {len(c.slots)} hour{'' if len(c.slots) == 1 else 's'}"
        if c.holes:
            longest = max(c.holes, key=lambda h: h.hours)
            part += f" (longest hole: {longest.describe()})"
        cov.append(part)
    if cov:
        out.append("Measured in this window: " + "; ".join(cov) + ".")
    for row in platform_table(report):
        if not row["planned"]:
            continue
        parts = []
        for n, s in row["circuits"].items():
            if s is None:
                parts.append(f"{n} not measured")
            elif s.meets:
                parts.append(f"{n} meets it ({s.passed} of {s.total})")
            else:
                parts.append(f"{n} does not ({len(s.failed)} of {s.total} requirements missed: "
                             + "; ".join(f["reason"] or f["requirement"] for f in s.failed[:2]) + ")")
        out.append(f"{row['title']}: " + ", ".join(parts) + ".")
    drills = getattr(report, "drills", None) or []
    if drills:
        d = drills[-1]
        gap = "" if d.get("max_gap_ms") is None else f", calls silent for at most {fmt(d['max_gap_ms'])} ms"
        out.append(f"Last failover drill: {d['circuit']} {'passed' if d['passed'] else 'FAILED'} on "
                   f"{when(d['at'])}{gap}.")
    return out


def holes_text(ch) -> list[str]:
    """'no measurements 2026-11-12 02:00 to 2026-11-14 09:00 UTC' for each hole of the circuit."""
    cov = getattr(ch, "coverage", None)
    return [h.describe() for h in cov.holes] if cov is not None else []


def runs_line(report) -> str:
    """'2016 runs', plus the unfinished latest run that is left out of every figure."""
    n = report.analysis.runs
    text = f"{n} run{'' if n == 1 else 's'}"
    for r in getattr(report, "in_progress", ()) or ():
        text += f" (a run started {when(r.started_at)} has not finished and is not counted)"
    return text
