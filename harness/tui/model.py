"""What the board shows, computed once per refresh: pure functions from stored
runs, the gate decision and the outage log to small view models.

Why a separate module: the widgets only format these dataclasses, so a key
press never touches the database or re-aggregates 26k runs (the board must
redraw in < 100 ms), and everything here is unit-testable without a terminal.

Colours are the stored checks' statuses (the latest result of each check,
harness.history.latest_checks): the board never re-judges a figure, so a
value shown red on the board is one `cutover check` failed (harness.judgement).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from harness import verdicts as V
from harness.reports.common import platform_line

# Which stored checks colour which figure of a circuit's panel; a step's
# "<step>.measured" / ".complete" error colours every figure of that step.
METRIC_CHECKS: dict[str, tuple[str, ...]] = {
    "rtt_ms": ("stream.delay", "latency.rtt"),
    "jitter_ms": ("stream.jitter_up", "stream.jitter_down", "stream.jitter"),
    "loss_pct": ("stream.loss_up", "stream.loss_down", "stream.loss", "latency.loss"),
    "mos": ("stream.mos",),
    "down_mbps": ("bandwidth.down",),
    "up_mbps": ("bandwidth.up",),
    "max_calls": ("capacity.calls",),
}

# Eight levels, as Textual's Sparkline and spark(1) use; a gap (no run in a bucket) is a space.
SPARK_BLOCKS = "▁▂▃▄▅▆▇█"


# ---------------------------------------------------------------- view models

@dataclass
class MetricView:
    key: str                  # "rtt_ms", "jitter_ms", ...
    label: str                # "RTT"
    text: str                 # "12.3 ms", "180/200 Mbit/s"
    status: str               # pass | warn | fail | error | none (not measured)
    points: list[tuple[dt.datetime, float]] = field(default_factory=list)   # (run start, value), oldest first
    reason: str = ""


@dataclass
class CircuitView:
    name: str
    role: str
    provider: str
    verdict: str | None                 # latest run's circuit verdict, None: never measured
    latest_at: dt.datetime | None
    runs: int                           # runs of this circuit in the window
    passed: int
    metrics: list[MetricView]
    problems: list[str]                 # reasons of the latest run's failing checks
    daily_pass_pct: list[float] = field(default_factory=list)   # per UTC day, oldest first
    pass_target_pct: float = 95.0       # the profile's cutover.pass_rate_pct
    loading: bool = False               # placeholder while the first read runs
    trend_start: dt.datetime | None = None   # the sparklines' time axis
    trend_end: dt.datetime | None = None
    measured_pct: float | None = None   # share of the window's hours with evidence (harness.history.Coverage)
    holes: list[str] = field(default_factory=list)   # "no measurements <start> to <end> UTC", latest first
    platforms: str = ""                 # "Teams: meets 6/6, score 74 · Zoom: ..." (planned platforms; '' none)

    @property
    def pass_rate_pct(self) -> float | None:
        return 100.0 * self.passed / self.runs if self.runs else None


@dataclass
class ChecklistRow:
    id: str
    title: str
    kind: str            # auto | manual
    ok: bool
    status: str          # "passed", "blocking", "signed off", "open", "revoked"
    by: str = ""
    at: dt.datetime | None = None
    note: str = ""


@dataclass
class OutageRow:
    circuit: str
    start: dt.datetime
    end: dt.datetime | None            # None: still ongoing
    what: str
    claim_by: dt.datetime | None       # None while ongoing (the clock starts at the end)
    id: str = ""                       # harness.history.outage_id: what `cutover claim` takes
    claimed: bool = False              # a filed claim is recorded (`cutover claim --filed`)

    def duration(self, now: dt.datetime) -> dt.timedelta:
        return (self.end or now) - self.start


@dataclass
class HeaderView:
    site: str
    now: dt.datetime
    days_in: int | None                 # covered days since parallel_run_start (harness.gate)
    min_days: int
    notice_by: dt.date | None
    disconnect_on: dt.date | None
    decision: str                       # GO | NO-GO
    blocking: list[str]

    @property
    def days_to_disconnect(self) -> int | None:
        if self.disconnect_on is None:
            return None
        return (self.disconnect_on - self.now.date()).days

    @property
    def first_blocking(self) -> str:
        return self.blocking[0] if self.blocking else ""


@dataclass
class BoardData:
    header: HeaderView
    circuits: list[CircuitView]
    checklist: list[ChecklistRow]
    outages: list[OutageRow]
    window_days: float
    data_version: int | None = None
    load_s: float = 0.0
    loaded: bool = True                 # False: the placeholder shown while the first read runs
    # the provider scorecard over the parallel run (harness.reports.provider.table): header,
    # rows, breach sentences
    scorecard: tuple[list[str], list[list[str]], list[str]] = ([], [], [])


# ---------------------------------------------------------------- sparkline

def sparkline(values: Sequence[float | None], width: int) -> str:
    """``values`` (oldest first) drawn in ``width`` cells: each cell is the mean
    of its bucket of runs, scaled between the series' min and max; an empty
    bucket (no measurement) is a space. A flat series sits on the lowest block."""
    if width <= 0 or not values:
        return ""
    n = len(values)
    cells: list[float | None] = []
    cols = min(width, n)
    for i in range(cols):
        lo, hi = i * n // cols, (i + 1) * n // cols
        bucket = [v for v in values[lo:hi] if v is not None and not _isnan(v)]
        cells.append(sum(bucket) / len(bucket) if bucket else None)
    present = [c for c in cells if c is not None]
    if not present:
        return " " * cols
    low, high = min(present), max(present)
    span = high - low
    out = []
    for c in cells:
        if c is None:
            out.append(" ")
        elif span <= 0:
            out.append(SPARK_BLOCKS[0])
        else:
            level = int(round((c - low) / span * (len(SPARK_BLOCKS) - 1)))
            out.append(SPARK_BLOCKS[level])
    return "".join(out)


def level_block(pct: float) -> str:
    """One block for a percentage on an absolute 0..100 scale (daily pass rates:
    a min..max scale would make 96 % look like an outage next to 100 %)."""
    pct = min(max(pct, 0.0), 100.0)
    return SPARK_BLOCKS[int(round(pct / 100 * (len(SPARK_BLOCKS) - 1)))]


def time_buckets(points: Sequence[tuple[dt.datetime, float]], start: dt.datetime, end: dt.datetime,
                 cells: int) -> list[float | None]:
    """``cells`` equal slices of [start, end): the mean of the points in each,
    None for a slice without a measurement. On a time axis a stretch without
    measurements (reflector down, scheduler stopped) shows as a gap instead of
    being squeezed out."""
    if cells <= 0 or end <= start:
        return []
    span = (end - start).total_seconds()
    sums = [0.0] * cells
    counts = [0] * cells
    for t, v in points:
        k = int((t - start).total_seconds() / span * cells)
        if 0 <= k < cells:
            sums[k] += v
            counts[k] += 1
        elif k == cells and t <= end:      # a point exactly at the end belongs to the last cell
            sums[-1] += v
            counts[-1] += 1
    return [sums[i] / counts[i] if counts[i] else None for i in range(cells)]


def _isnan(v: float) -> bool:
    return isinstance(v, float) and math.isnan(v)


# ---------------------------------------------------------------- circuits (from harness.history)

def _worse_of(a: Sequence[tuple[dt.datetime, float]], b: Sequence[tuple[dt.datetime, float]]
              ) -> list[tuple[dt.datetime, float]]:
    """Per run, the worse (larger) of two per-direction series (jitter, loss):
    a call has a listener at each end, the worse direction is what one hears."""
    merged: dict[dt.datetime, float] = {}
    for t, v in list(a) + list(b):
        merged[t] = max(v, merged.get(t, v))
    return sorted(merged.items())


def _f(x: float | None, unit: str = "") -> str:
    if x is None:
        return "–"
    s = V.fmt(x)
    return f"{s} {unit}" if unit else s


def metric_status(key: str, checks: Sequence[V.Check]) -> tuple[str, str]:
    """(status, reason) of a panel figure from the stored checks: the worst of
    the checks that judge it (:data:`METRIC_CHECKS`); ``none`` when no stored
    check judges it."""
    ids = METRIC_CHECKS.get(key, ())
    steps = {i.split(".", 1)[0] for i in ids}
    mine = [c for c in checks if c.id in ids or (c.step in steps and c.id.endswith((".measured", ".complete")))]
    worst = V.worst_status(c.status for c in mine)
    if worst is None:
        return "none", ""
    return worst, next(c.reason for c in mine if c.status == worst)


def metric_views(profile, circuit, latest: dict[str, float | None],
                 series: dict[str, list[tuple[dt.datetime, float]]], required_mbps: tuple[float, float],
                 checks: Sequence[V.Check] = ()) -> list[MetricView]:
    """Latest figures of one circuit, coloured by the stored ``checks`` (never re-judged)."""
    planned_calls = profile.planned.calls

    def view(key: str, label: str, text: str) -> MetricView:
        status, reason = metric_status(key, checks)
        return MetricView(key, label, text, status, series.get(key, []), reason)

    rtt, jit, loss, mos = (latest.get(k) for k in ("rtt_ms", "jitter_ms", "loss_pct", "mos"))
    down, up, calls = (latest.get(k) for k in ("down_mbps", "up_mbps", "max_calls"))
    return [
        view("rtt_ms", "RTT", _f(rtt, "ms")),
        view("jitter_ms", "Jitter", _f(jit, "ms")),
        view("loss_pct", "Loss", _f(loss, "%")),
        view("mos", "MOS", _f(mos)),
        view("down_mbps", "Down", f"{_f(down)}/{V.fmt(circuit.down_mbps)} Mbit/s"),
        view("up_mbps", "Up", f"{_f(up)}/{V.fmt(circuit.up_mbps)} Mbit/s"),
        view("max_calls", "Calls", f"{_f(calls)}/{planned_calls}"),
    ]


def circuit_view(profile, circuit, ch, required_mbps: tuple[float, float],
                 trend: tuple[dt.datetime | None, dt.datetime | None] = (None, None)) -> CircuitView:
    """One circuit's panel from its :class:`harness.history.CircuitHistory`
    (the same pass/outage definitions as the report and the gate)."""
    s = ch.series
    merged = {
        "rtt_ms": s.get("rtt_p50_ms", []),
        "jitter_ms": _worse_of(s.get("jitter_up_ms", []), s.get("jitter_down_ms", [])),
        "loss_pct": _worse_of(s.get("loss_up_pct", []), s.get("loss_down_pct", [])),
        "mos": s.get("mos", []),
        "down_mbps": s.get("down_mbps", []),
        "up_mbps": s.get("up_mbps", []),
        "max_calls": s.get("capacity_calls", []),
    }
    # latest measured value of each figure (bandwidth and capacity may run less often than stream)
    latest = {k: (v[-1][1] if v else None) for k, v in merged.items()}
    problems = [c.reason or c.id for c in V.blocking(ch.latest_checks)]
    cov = getattr(ch, "coverage", None)
    measured_pct = None if cov is None or cov.uncovered_pct is None else 100.0 - cov.uncovered_pct
    holes = [h.describe() for h in reversed(cov.holes)] if cov is not None else []
    return CircuitView(
        name=circuit.name, role=circuit.role, provider=circuit.provider,
        verdict=ch.latest_verdict, latest_at=ch.latest_at, runs=ch.runs, passed=ch.passed,
        metrics=metric_views(profile, circuit, latest, merged, required_mbps, ch.latest_checks),
        problems=problems,
        daily_pass_pct=[d.pass_pct for d in ch.daily], pass_target_pct=profile.cutover.pass_rate_pct,
        trend_start=trend[0], trend_end=trend[1], measured_pct=measured_pct, holes=holes,
        platforms=platform_line(profile, ch.latest_checks))


# ---------------------------------------------------------------- outages, checklist, header

def outage_rows(outages: Iterable[Any], claimed: Iterable[str] = ()) -> list[OutageRow]:
    """Rows of :class:`harness.history.Outage`, most urgent first: ongoing
    outages (the circuit is down now), then by claim deadline, earliest first
    (the same order as harness.history.by_urgency). ``claimed``: the ids of
    outages whose claim is filed (Store.claims)."""
    filed = set(claimed)
    rows = [OutageRow(circuit=o.circuit, start=o.start, end=o.end, what=_what(o),
                      claim_by=o.claim_by, id=getattr(o, "id", ""), claimed=getattr(o, "id", "") in filed)
            for o in outages]
    far = dt.datetime.max.replace(tzinfo=dt.timezone.utc)
    rows.sort(key=lambda r: (r.end is not None, r.claim_by or far, r.start))
    return rows


def _what(o: Any) -> str:
    """First failed check's reason ('stream.mos: MOS 3.1 < 4.0 minimum'), the
    kind when there is none (unreachable with no check detail)."""
    failed = getattr(o, "failed", None) or []
    if failed:
        first = failed[0]
        more = f" (+{len(failed) - 1})" if len(failed) > 1 else ""
        return f"{first.reason or first.id}{more}"
    return getattr(o, "kind", "") or ""
