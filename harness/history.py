"""Analysis over stored runs: latest values, trends, daily pass rates, old vs
new side by side, and the outage and SLA-claim log.

Pure computation over ``RunRecord``s from :mod:`harness.store` (nothing here
touches the database), so the report, the gate and the board share one
definition of "passed" and "outage".

Definitions (also in docs/reports.md):

- A circuit's run **passes** when its verdict is GO or WARN (WARN means "within
  the thresholds but close": the circuit carried voice). NO-GO is a failing
  run; a NO-GO whose only network problems are ``error`` checks (the far end
  did not answer while our side was sound) is an **unreachable** run.
- A NO-GO whose problems are all measurement gaps or internal errors (cause
  classes, harness.verdicts) is a **gap**: our side could not measure. A gap
  neither passes nor fails, never opens or ends an outage, and counts as no
  evidence in the coverage.
- A **partial** run (``cutover check --step``, run kind ``partial``) is
  evidence for its own checks only: it updates "latest" per check, but is
  not a run of the circuit in pass rates, outages or coverage.
- An **outage** is a maximal sequence of consecutive failing/unreachable runs
  of one circuit; it records the run and the network checks that opened it
  (``opened_by``). ``start`` is the start of its first failing run, ``end`` the
  start of the first passing run after it (the first time the harness saw the
  circuit healthy again). A single failing run between two passes is an outage
  of one run (start = that run, end = the next pass): SLA claims are about what
  was observed, and a 5-minute failure in a voice circuit dropped calls.
  An outage with no passing run after it is **ongoing**: ``end`` and
  ``claim_by`` are None, its duration runs to ``now``.
- ``claim_by = end + sla_claim_hours`` (profile ``cutover.sla_claim_hours``,
  default 24): the last moment to claim the outage with the provider.
- Runs in which a circuit was not measured at all (``check --circuit other``)
  neither pass nor fail for it; a gap in the schedule is not an outage.
"""

from __future__ import annotations

import datetime as dt
import math
import operator
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from harness.verdicts import NETWORK, cause_of

PASS_VERDICTS = ("GO", "WARN")
PARTIAL_KIND = "partial"    # runs of some steps only (cutover check --step)


def is_full(run) -> bool:
    """A run of the whole suite (not ``--step``): evidence for the circuit as a whole."""
    return getattr(run, "kind", "check") != PARTIAL_KIND


# ---------------------------------------------------------------- metrics

@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    higher_is_better: bool
    paths: tuple[tuple[str, ...], ...]   # (probe, key, key...) tried in order in the raw JSON


METRICS: tuple[Metric, ...] = (
    Metric("rtt_p50_ms", "RTT p50", "ms", False,
           (("stream", "rtt_ms", "p50"), ("latency", "rtt_ms", "p50"), ("bandwidth", "latency_ms", "idle_p50"))),
    Metric("jitter_up_ms", "Jitter up", "ms", False, (("stream", "jitter_ms", "up"),)),
    Metric("jitter_down_ms", "Jitter down", "ms", False, (("stream", "jitter_ms", "down"),)),
    Metric("loss_up_pct", "Loss up", "%", False, (("stream", "loss_pct", "up"),)),
    Metric("loss_down_pct", "Loss down", "%", False, (("stream", "loss_pct", "down"),)),
    Metric("mos", "MOS", "", True, (("stream", "mos"),)),
    Metric("down_mbps", "Throughput down", "Mbit/s", True, (("bandwidth", "down_mbps"),)),
    Metric("up_mbps", "Throughput up", "Mbit/s", True, (("bandwidth", "up_mbps"),)),
    Metric("latency_increase_ms", "RTT rise under load", "ms", False,
           (("bandwidth", "latency_ms", "increase_p50"),)),
    Metric("capacity_calls", "Capacity", "calls", True, (("capacity", "max_calls"),)),
)
METRIC_BY_KEY = {m.key: m for m in METRICS}


def metric_value(raw: dict[str, Any] | None, metric: Metric) -> float | None:
    """The metric from a circuit's raw probe JSON, or None when not measured."""
    if not raw:
        return None
    for path in metric.paths:
        node: Any = raw
        for part in path:
            node = node.get(part) if isinstance(node, Mapping) else None
            if node is None:
                break
        if isinstance(node, bool):
            continue
        if isinstance(node, (int, float)) and math.isfinite(node):
            return float(node)
    return None


# ---------------------------------------------------------------- run outcome

def outcome(circuit_record) -> str:
    """``pass``, ``fail``, ``unreachable`` or ``gap`` for one circuit in one run
    (module doc). Only the network's problems make ``fail``/``unreachable``."""
    if circuit_record.verdict in PASS_VERDICTS:
        return "pass"
    network = [c for c in circuit_record.checks
               if c.status in ("fail", "error") and cause_of(c) == NETWORK]
    if not network:
        return "gap"
    return "fail" if any(c.status == "fail" for c in network) else "unreachable"


def unfinished_latest(runs: list, now: dt.datetime) -> list:
    """A run still in progress is not a run yet: when the latest run (oldest
    first) had not finished at ``now`` (``finished_at`` empty or later) it is
    returned, to be left out of every count, pass rate, chart, latest check and
    gate item; the report says so. An unfinished run with later runs after it
    died; the circuits it completed stay evidence. The one rule for the report
    and the gate."""
    if runs and (runs[-1].finished_at is None or runs[-1].finished_at > now):
        return [runs[-1]]
    return []


def settled(runs: list, now: dt.datetime) -> list:
    """``runs`` without the one still in progress (:func:`unfinished_latest`)."""
    return runs[:-1] if unfinished_latest(runs, now) else runs


def circuit_runs(runs: Iterable, circuit: str, *, full_only: bool = True) -> list[tuple[Any, Any]]:
    """(run, circuit_record) for the runs that measured ``circuit``, oldest
    first; partial runs (``--step``) only with ``full_only=False``."""
    out = [(r, r.circuits[circuit]) for r in runs if circuit in r.circuits and (not full_only or is_full(r))]
    # store.runs returns oldest first; sort only what is not (a cheap pairwise check)
    if any(a[0].started_at > b[0].started_at for a, b in zip(out, out[1:])):
        out.sort(key=lambda rc: rc[0].started_at)
    return out


# ---------------------------------------------------------------- outages

@dataclass
class FailedCheck:
    id: str
    status: str          # fail | error (the worst seen in the episode)
    reason: str          # the first reason seen
    runs: int            # in how many runs of the episode it failed


@dataclass
class Outage:
    circuit: str
    start: dt.datetime
    end: dt.datetime | None              # first passing run after it; None while ongoing
    duration_s: float                    # to ``end``, or to ``now`` while ongoing
    ongoing: bool
    runs: int                            # failing runs in the episode
    kind: str                            # failed | unreachable | failed+unreachable
    failed: list[FailedCheck]
    claim_by: dt.datetime | None         # end + sla_claim_hours
    last_failing_at: dt.datetime
    starts_before_window: bool = False   # the first run analysed already failed
    opened_by_run: int | None = None     # the run whose network checks opened it
    evidence: list[str] = field(default_factory=list)   # "check id: reason" of that run

    @property
    def id(self) -> str:
        """Stable across reports, boards and claims: the circuit and the start to
        the minute in UTC ("new-20261112T0200Z"); see :func:`outage_id`."""
        return outage_id(self.circuit, self.start)

    @property
    def summary(self) -> str:
        parts = [f"{f.id}: {f.reason}" for f in self.failed[:3]]
        more = f" (+{len(self.failed) - 3} more)" if len(self.failed) > 3 else ""
        return "; ".join(parts) + more

    def to_dict(self) -> dict:
        return {"id": self.id, "circuit": self.circuit, "start": iso(self.start), "end": iso(self.end),
                "duration_s": round(self.duration_s, 1), "ongoing": self.ongoing, "runs": self.runs,
                "kind": self.kind, "claim_by": iso(self.claim_by),
                "last_failing_at": iso(self.last_failing_at),
                "starts_before_window": self.starts_before_window,
                "opened_by": {"run_id": self.opened_by_run, "checks": list(self.evidence)},
                "failed": [{"id": f.id, "status": f.status, "reason": f.reason, "runs": f.runs}
                           for f in self.failed]}


def outage_id(circuit: str, start: dt.datetime) -> str:
    """The one spelling of an outage's id: deterministic from what defines the
    outage (its circuit and its first failing run), so the same outage keeps its
    id in every report, on the board and in `cutover claim`, whatever window is
    analysed. Two outages of one circuit would share an id only if both began in
    the same minute (fail, pass, fail within 60 s): scheduled runs are minutes
    apart, and `cutover claim` then takes the first."""
    return f"{circuit}-{start.astimezone(dt.timezone.utc):%Y%m%dT%H%MZ}"


def outages(runs: Iterable, circuit: str, sla_claim_hours: float = 24,
            now: dt.datetime | None = None) -> list[Outage]:
    """The outage episodes of ``circuit`` in ``runs`` (see the module doc)."""
    return _outages(circuit_runs(runs, circuit), circuit, sla_claim_hours,
                    now or dt.datetime.now(dt.timezone.utc))


def _outages(seq: list, circuit: str, sla_claim_hours: float, now: dt.datetime) -> list[Outage]:
    episodes: list[Outage] = []
    current: list[tuple[Any, Any, str]] = []

    def close(end: dt.datetime | None) -> None:
        first_run = current[0][0]
        kinds = {k for _, _, k in current}
        failed: "OrderedDict[str, FailedCheck]" = OrderedDict()
        for _, rec, _k in current:
            for c in rec.checks:
                if c.status not in ("fail", "error") or cause_of(c) != NETWORK:
                    continue
                fc = failed.get(c.id)
                if fc is None:
                    failed[c.id] = FailedCheck(c.id, c.status, c.reason or "", 1)
                else:
                    fc.runs += 1
                    if c.status == "fail":
                        fc.status = "fail"
        start = first_run.started_at
        stop = end or now
        episodes.append(Outage(
            circuit=circuit, start=start, end=end, duration_s=max(0.0, (stop - start).total_seconds()),
            ongoing=end is None, runs=len(current),
            kind="+".join(sorted(kinds, key=["fail", "unreachable"].index)).replace("fail", "failed"),
            failed=list(failed.values()),
            claim_by=end + dt.timedelta(hours=sla_claim_hours) if end else None,
            last_failing_at=current[-1][0].started_at,
            starts_before_window=first_run is seq[0][0],
            opened_by_run=getattr(first_run, "id", None),
            evidence=[f"{c.id}: {c.reason}" for c in current[0][1].checks
                      if c.status in ("fail", "error") and cause_of(c) == NETWORK]))
        current.clear()

    for run, rec in seq:
        k = outcome(rec)
        if k == "gap":          # our side could not measure: no evidence either way
            continue
        if k == "pass":
            if current:
                close(run.started_at)
        else:
            current.append((run, rec, k))
    if current:
        close(None)
    return episodes


def by_urgency(items: Iterable[Outage]) -> list[Outage]:
    """Most urgent first: ongoing outages, then the nearest claim deadline."""
    far = dt.datetime.max.replace(tzinfo=dt.timezone.utc)
    return sorted(items, key=lambda o: (not o.ongoing, o.claim_by or far, o.start))


# ---------------------------------------------------------------- evidence coverage

SLOT = dt.timedelta(hours=1)
SLOT_STATES = ("passed", "failed", "outage", "none")   # none: no evidence in that hour


@dataclass
class Hole:
    start: dt.datetime
    end: dt.datetime                     # exclusive; ``now`` for a hole still open

    @property
    def hours(self) -> float:
        return (self.end - self.start).total_seconds() / 3600

    def describe(self) -> str:
        f = "%Y-%m-%d %H:%M"
        return f"no measurements {self.start.strftime(f)} to {self.end.strftime(f)} UTC"

    def to_dict(self) -> dict:
        return {"start": iso(self.start), "end": iso(self.end), "hours": round(self.hours, 2)}


@dataclass
class Coverage:
    """How much of a window was measured, hour by hour (docs/judgement.md).

    Each hour ("slot") of the window is ``passed`` (every full run measured
    in it passed), ``failed`` (a run failed a threshold), ``outage`` (the
    circuit did not answer) or ``none`` (no evidence: no full run, or only
    gaps). A UTC day is **covered** when at least ``min_hours_per_day`` of
    its hours hold evidence. The pass rate is over measured hours."""
    start: dt.datetime
    end: dt.datetime
    min_hours_per_day: int
    slots: list[tuple[dt.datetime, str]]
    days: list[tuple[dt.date, int, bool]]           # (day, measured hours, covered)
    holes: list[Hole]

    def count(self, state: str) -> int:
        return sum(1 for _, s in self.slots if s == state)

    @property
    def measured(self) -> int:
        return len(self.slots) - self.count("none")

    @property
    def covered_days(self) -> int:
        return sum(1 for _, _, ok in self.days if ok)

    @property
    def pass_pct(self) -> float | None:
        return 100.0 * self.count("passed") / self.measured if self.measured else None

    @property
    def uncovered_pct(self) -> float | None:
        return 100.0 * self.count("none") / len(self.slots) if self.slots else None

    def covered_day(self, n: int) -> dt.date | None:
        """The n-th covered day (1-based), or None when fewer are covered."""
        seen = 0
        for day, _, ok in self.days:
            seen += ok
            if ok and seen == n:
                return day
        return None

    def summary(self) -> str:
        """One line: 'coverage 82 % of 480 h measured, 17 of 20 days covered; holes: ...'."""
        from harness.verdicts import fmt
        if not self.slots:
            return "coverage: no hours in the window yet"
        line = (f"coverage {fmt(100.0 - (self.uncovered_pct or 0.0))} % of {len(self.slots)} h measured, "
                f"{self.covered_days} of {len(self.days)} days covered")
        if self.holes:
            shown = "; ".join(h.describe() for h in self.holes[:3])
            more = f" (+{len(self.holes) - 3} more)" if len(self.holes) > 3 else ""
            line += f"; holes: {shown}{more}"
        return line

    def to_dict(self) -> dict:
        return {"start": iso(self.start), "end": iso(self.end), "min_hours_per_day": self.min_hours_per_day,
                "hours": len(self.slots), "measured_hours": self.measured,
                **{f"{s}_hours": self.count(s) for s in SLOT_STATES},
                "pass_pct": self.pass_pct, "uncovered_pct": self.uncovered_pct,
                "covered_days": self.covered_days, "days": len(self.days),
                "holes": [h.to_dict() for h in self.holes]}


def min_hours_per_day(profile) -> int:
    """The profile's ``cutover.coverage_min_hours_per_day`` (its default for
    profile-like objects without it)."""
    from harness.profile import Cutover
    return getattr(profile.cutover, "coverage_min_hours_per_day",
                   Cutover.model_fields["coverage_min_hours_per_day"].default)


_SLOT_RANK = {"none": 0, "passed": 1, "failed": 2, "outage": 3}
_SLOT_OF = {"pass": "passed", "fail": "failed", "unreachable": "outage"}


def coverage(runs: Iterable, circuit: str, start: dt.datetime, end: dt.datetime,
             min_hours_per_day: int = 18) -> Coverage:
    """The evidence coverage of ``circuit`` from ``start`` to ``end`` (see
    :class:`Coverage`). The hour in progress counts only once it holds evidence."""
    start = start.astimezone(dt.timezone.utc)
    end = end.astimezone(dt.timezone.utc)
    base = start.replace(minute=0, second=0, microsecond=0)
    n = max(0, math.ceil((end - base) / SLOT))
    states = ["none"] * n
    for run, rec in circuit_runs(runs, circuit):
        i = int((run.started_at - base) // SLOT)
        if not 0 <= i < n:
            continue
        s = _SLOT_OF.get(outcome(rec))
        if s and _SLOT_RANK[s] > _SLOT_RANK[states[i]]:
            states[i] = s
    slots = [(base + i * SLOT, s) for i, s in enumerate(states)
             if base + (i + 1) * SLOT <= end or s != "none"]
    days: "OrderedDict[dt.date, int]" = OrderedDict()
    for t, s in slots:
        days[t.date()] = days.get(t.date(), 0) + (s != "none")
    holes: list[Hole] = []
    hole_from = None
    for t, s in slots:
        if s == "none" and hole_from is None:
            hole_from = t
        elif s != "none" and hole_from is not None:
            holes.append(Hole(hole_from, t))
            hole_from = None
    if hole_from is not None:
        holes.append(Hole(hole_from, end))
    return Coverage(start, end, min_hours_per_day, slots,
                    [(d, h, h >= min_hours_per_day) for d, h in days.items()], holes)


# ---------------------------------------------------------------- pass rates and trends

@dataclass
class DailyRate:
    date: dt.date
    runs: int
    passed: int

    @property
    def pass_pct(self) -> float:
        return 100.0 * self.passed / self.runs if self.runs else 0.0


def daily_pass_rates(runs: Iterable, circuit: str) -> list[DailyRate]:
    """Runs and passes of ``circuit`` per UTC day, oldest first."""
    return _daily(circuit_runs(runs, circuit))


def _daily(seq: list) -> list[DailyRate]:
    days: "OrderedDict[dt.date, DailyRate]" = OrderedDict()
    for run, rec in seq:
        day = run.started_at.astimezone(dt.timezone.utc).date()
        d = days.setdefault(day, DailyRate(day, 0, 0))
        k = outcome(rec)
        if k == "gap":
            continue
        d.runs += 1
        d.passed += k == "pass"
    return list(days.values())


def pass_rate(runs: Iterable, circuit: str) -> tuple[int, int]:
    """(passed, measured) full runs of ``circuit``; gaps are not measured."""
    seq = [outcome(rec) for _, rec in circuit_runs(runs, circuit)]
    measured = [k for k in seq if k != "gap"]
    return sum(k == "pass" for k in measured), len(measured)


@dataclass
class MetricSummary:
    key: str
    label: str
    unit: str
    count: int
    latest: float | None
    latest_at: dt.datetime | None
    min: float | None
    mean: float | None
    max: float | None
    p95: float | None
    slope_per_day: float | None          # least-squares slope, unit per day
    trend: str | None                    # better | worse | steady (None: too little data, TREND_MIN_*)
    span_hours: float = 0.0              # first to last sample

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in ("key", "label", "unit", "count", "latest", "min", "mean",
                                           "max", "p95", "slope_per_day", "trend", "span_hours")}
        d["latest_at"] = iso(self.latest_at)
        return d


# A trend (and its slope) is claimed only from at least this many samples spread
# over at least this many hours: 3 samples over 5 minutes once read as
# "worse (+19.3 ms/day)", a slope extrapolated 288-fold from noise.
TREND_MIN_SAMPLES = 4
TREND_MIN_HOURS = 24.0


def summarize(metric: Metric, series: Sequence[tuple[dt.datetime, float]]) -> MetricSummary:
    if not series:
        return MetricSummary(metric.key, metric.label, metric.unit, 0, None, None, None, None,
                             None, None, None, None)
    values = [v for _, v in series]
    n = len(values)
    mean = sum(values) / n
    ordered = sorted(values)
    p95 = ordered[min(n - 1, math.ceil(0.95 * n) - 1)]
    slope = trend = None
    span_days = (series[-1][0] - series[0][0]).total_seconds() / 86400
    if n >= TREND_MIN_SAMPLES and span_days * 24 >= TREND_MIN_HOURS:
        t0 = series[0][0].timestamp()
        xs = [(t.timestamp() - t0) / 86400 for t, _ in series]
        sx = sum(xs)
        sxx = sum(map(operator.mul, xs, xs)) - sx * sx / n        # centred sums, C-speed
        if sxx > 1e-12:
            slope = (sum(map(operator.mul, xs, values)) - sx * mean) / sxx
            # "steady" unless the fitted change over the window is > 5 % of the
            # mean (or of the spread for metrics that sit near zero, like loss).
            scale = max(abs(mean), ordered[-1] - ordered[0], 1e-9)
            change = slope * span_days
            if abs(change) <= 0.05 * scale:
                trend = "steady"
            else:
                trend = "better" if (change > 0) == metric.higher_is_better else "worse"
    return MetricSummary(metric.key, metric.label, metric.unit, n, values[-1], series[-1][0],
                         ordered[0], mean, ordered[-1], p95, slope, trend, span_days * 24)


def metric_series(runs: Iterable, circuit: str, metric: Metric) -> list[tuple[dt.datetime, float]]:
    out = []
    for run, rec in circuit_runs(runs, circuit):
        v = metric_value(rec.raw, metric)
        if v is not None:
            out.append((run.started_at, v))
    return out


# ---------------------------------------------------------------- the whole analysis

def latest_checks(seq: Sequence[tuple[Any, Any]]) -> list:
    """The latest result of each check: each step's checks come from the
    latest run that ran that step, so a partial run (``--step latency``)
    replaces the latency checks and leaves MOS, bandwidth and capacity as the
    latest full run measured them. ``seq`` is (run, circuit record) oldest
    first, partial runs included; only the latest full run and the runs after
    it are read."""
    last_full = max((i for i, (run, _) in enumerate(seq) if is_full(run)), default=0)
    by_step: "OrderedDict[str, list]" = OrderedDict()
    for _, rec in seq[last_full:]:
        steps: "OrderedDict[str, list]" = OrderedDict()
        for c in rec.checks:
            steps.setdefault(c.step, []).append(c)
        by_step.update(steps)
    return [c for checks in by_step.values() for c in checks]


@dataclass
class CircuitHistory:
    name: str
    role: str
    provider: str
    runs: int
    passed: int
    latest_verdict: str | None
    latest_at: dt.datetime | None
    latest_checks: list = field(default_factory=list)
    metrics: dict[str, MetricSummary] = field(default_factory=dict)
    series: dict[str, list[tuple[dt.datetime, float]]] = field(default_factory=dict)
    daily: list[DailyRate] = field(default_factory=list)
    outages: list[Outage] = field(default_factory=list)
    gaps: int = 0                        # full runs in which our side could not measure
    coverage: Coverage | None = None

    @property
    def pass_pct(self) -> float | None:
        return 100.0 * self.passed / self.runs if self.runs else None

    def to_dict(self, with_series: bool = False) -> dict:
        d = {"name": self.name, "role": self.role, "provider": self.provider, "runs": self.runs,
             "passed": self.passed, "pass_pct": self.pass_pct, "latest_verdict": self.latest_verdict,
             "latest_at": iso(self.latest_at),
             "latest_checks": [_check_dict(c) for c in self.latest_checks],
             "metrics": {k: m.to_dict() for k, m in self.metrics.items()},
             "daily": [{"date": d.date.isoformat(), "runs": d.runs, "passed": d.passed,
                        "pass_pct": d.pass_pct} for d in self.daily],
             "outages": [o.to_dict() for o in self.outages], "gaps": self.gaps,
             "coverage": self.coverage.to_dict() if self.coverage else None}
        if with_series:
            d["series"] = {k: [[iso(t), v] for t, v in s] for k, s in self.series.items()}
        return d


@dataclass
class HistoryAnalysis:
    since: dt.datetime | None
    until: dt.datetime
    runs: int
    circuits: "OrderedDict[str, CircuitHistory]"

    def all_outages(self) -> list[Outage]:
        return by_urgency(o for c in self.circuits.values() for o in c.outages)

    def comparison(self) -> list[dict]:
        """Old vs new (vs backup) side by side: one row per metric with each
        circuit's window mean and latest value, and which circuit is better."""
        rows = []
        for metric in METRICS:
            cells: dict[str, dict] = {}     # the row's cells: measured circuits only (count > 0: mean set)
            for name, ch in self.circuits.items():
                s = ch.metrics.get(metric.key)
                if s and s.count:
                    cells[name] = {"mean": s.mean, "latest": s.latest}
            if not cells:
                continue
            best = (max if metric.higher_is_better else min)(cells, key=lambda n: cells[n]["mean"])
            # a difference the report cannot show (3 significant digits) is no winner:
            # "MOS 4.37 vs 4.37, better: old" would mislead the reader
            shown = f"{cells[best]['mean']:.3g}"
            tie = sum(1 for c in cells.values() if f"{c['mean']:.3g}" == shown) > 1
            rows.append({"metric": metric.key, "label": metric.label, "unit": metric.unit,
                         "circuits": cells, "best": best if len(cells) > 1 and not tie else None})
        return rows


def analyze(runs: Sequence, profile, since: dt.datetime | None = None,
            now: dt.datetime | None = None,
            series: dict[str, dict[str, list[tuple[dt.datetime, float]]]] | None = None,
            outage_runs: Sequence | None = None) -> HistoryAnalysis:
    """Everything the report and the board show, for the runs given (already
    limited to the window by the caller's store query). ``series`` (circuit ->
    metric key -> points, from :func:`load_series`) saves reading every run's
    raw JSON; without it the values come from each record's ``raw``.

    ``outage_runs``: a longer history (e.g. the whole parallel run) to find
    outages in, so one that began before ``since`` keeps its true start; only
    outages still running at ``since`` or later are kept."""
    now = now or dt.datetime.now(dt.timezone.utc)
    hours = profile.cutover.sla_claim_hours
    names = [c.name for c in profile.circuits]
    # circuits no longer in the profile still appear, after the profile's own
    for run in runs:
        for name in run.circuits:
            if name not in names:
                names.append(name)
    circuits: "OrderedDict[str, CircuitHistory]" = OrderedDict()
    for name in names:
        try:
            c = profile.circuit(name)
            role, provider = c.role, c.provider
        except KeyError:
            role, provider = "unknown", ""
        seq = circuit_runs(runs, name)
        kinds = [outcome(rec) for _, rec in seq]
        passed = kinds.count("pass")
        latest_run, latest_rec = seq[-1] if seq else (None, None)
        every = circuit_runs(runs, name, full_only=False)
        if every and (latest_run is None or every[-1][0].started_at > latest_run.started_at):
            latest_run, latest_rec = every[-1]
        if series is not None:
            cseries = {m.key: list(series.get(name, {}).get(m.key, [])) for m in METRICS}
        else:
            cseries = {m.key: [] for m in METRICS}
            for run, rec in seq:
                for m in METRICS:
                    v = metric_value(rec.raw, m)
                    if v is not None:
                        cseries[m.key].append((run.started_at, v))
        ch = CircuitHistory(
            name=name, role=role, provider=provider, runs=len(seq) - kinds.count("gap"), passed=passed,
            gaps=kinds.count("gap"),
            latest_verdict=latest_rec.verdict if latest_rec else None,
            latest_at=latest_run.started_at if latest_run else None,
            latest_checks=latest_checks(every),
            coverage=coverage(runs, name, since or (every[0][0].started_at if every else now), now,
                              min_hours_per_day(profile)),
            metrics={m.key: summarize(m, cseries[m.key]) for m in METRICS},
            series=cseries, daily=_daily(seq),
            outages=_outages(seq, name, hours, now) if outage_runs is None else
            [o for o in _outages(circuit_runs(outage_runs, name), name, hours, now)
             if since is None or o.end is None or o.end > since])
        circuits[name] = ch
    return HistoryAnalysis(since=since, until=now, runs=len(runs), circuits=circuits)


# ---------------------------------------------------------------- loading from the store

def load_runs(store, site: str, since: dt.datetime | None = None,
              until: dt.datetime | None = None) -> list:
    """Runs for analysis, cheaply: only the failing checks (all the outage log
    needs), except the latest full run of each circuit and the partial runs
    after it, which get all their checks (the report's "latest checks" table
    and the JUnit file: :func:`latest_checks`)."""
    runs = store.runs(site, since=since, until=until, checks="failing")
    latest: dict[str, int] = {}
    for i, run in enumerate(runs):
        for name in run.circuits:
            if is_full(run):
                latest[name] = i
            else:
                latest.setdefault(name, i)
    full: dict[int, Any] = {}
    for name, first in latest.items():
        for run in runs[first:]:
            if name not in run.circuits:
                continue
            if run.id not in full:
                full[run.id] = store.run(run.id)
            rec = full[run.id].circuits.get(name) if full[run.id] else None
            if rec is not None:
                run.circuits[name].checks = list(rec.checks)
    return runs


def load_series(store, site: str, since: dt.datetime | None = None,
                until: dt.datetime | None = None,
                keys: Iterable[str] | None = None) -> dict[str, dict[str, list[tuple[dt.datetime, float]]]] | None:
    """circuit -> metric key -> [(started_at, value)], oldest first, for every
    metric of :data:`METRICS`, read in one pass per probe by the database's
    own JSON functions (:meth:`harness.store.Store.json_numbers`).

    Why not ``run.circuits[c].raw``: that loads one JSON blob per run and
    circuit (26k queries over 30 days x 3 circuits, ~2 s). If the store
    cannot extract (a stored document it cannot parse) this returns None and
    the caller falls back to the per-run raw JSON (same values, slower; a
    test checks both paths agree)."""
    from harness.store import from_ts
    by_probe: dict[str, list[tuple[str, int, tuple[str, ...]]]] = {}
    wanted_keys = set(keys) if keys is not None else None
    for m in METRICS:
        if wanted_keys is not None and m.key not in wanted_keys:
            continue
        for prio, p in enumerate(m.paths):
            by_probe.setdefault(p[0], []).append((m.key, prio, p[1:]))
    # (circuit, metric key, path priority) -> [(started_at text, value)], time order
    found: dict[tuple[str, str, int], list[tuple[str, float]]] = {}
    rows = store.json_numbers(site, {probe: [path for _, _, path in wanted] for probe, wanted in by_probe.items()},
                              since, until)
    if rows is None:
        return None
    for st, circuit, probe, values in rows:
        for (key, prio, _), value in zip(by_probe[probe], values):
            if value is not None and math.isfinite(value):
                found.setdefault((circuit, key, prio), []).append((st, float(value)))
    merged: dict[tuple[str, str], list[tuple[str, float]]] = {}
    for (circuit, key, prio) in sorted(found, key=lambda k: k[2]):
        pts = found[(circuit, key, prio)]
        have = merged.get((circuit, key))
        if have is None:
            merged[(circuit, key)] = pts
        else:                                     # a lower-priority source fills runs the first lacks
            seen = {st for st, _ in have}
            merged[(circuit, key)] = sorted(have + [p for p in pts if p[0] not in seen])
    out: dict[str, dict[str, list[tuple[dt.datetime, float]]]] = {}
    times: dict[str, dt.datetime] = {}           # one datetime per run, shared by every metric
    for (circuit, key), pts in merged.items():
        conv = []
        for st, v in pts:
            t = times.get(st)
            if t is None:
                t = times[st] = from_ts(st)
            conv.append((t, v))
        out.setdefault(circuit, {})[key] = conv
    return out


# ---------------------------------------------------------------- helpers

def iso(t: dt.datetime | dt.date | None) -> str | None:
    if t is None:
        return None
    if isinstance(t, dt.datetime):
        return t.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")
    return t.isoformat()


def _check_dict(c) -> dict:
    return {"id": c.id, "status": c.status, "measured": c.measured, "required": c.required,
            "unit": getattr(c, "unit", ""), "margin": c.margin, "reason": c.reason}
