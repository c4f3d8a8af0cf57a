"""Everything the board shows, read in one pass: one store query for the
window, then the gate (harness.gate.evaluate) and the history analysis
(harness.history.analyze) over the same runs, turned into view models.

Why one pass: with 30 days x 3 circuits at 5-minute intervals (~26k circuit
results) the board must open in < 2 s; the gate and the history would each
query the same runs otherwise. Key presses never call this; refreshes do.
"""

from __future__ import annotations

import datetime as dt
import time

from harness import gate, history
from harness.planning import plan_profile
from harness.tui.model import BoardData, ChecklistRow, HeaderView, circuit_view, outage_rows

UTC = dt.timezone.utc
DEFAULT_WINDOW = dt.timedelta(days=7)   # without a parallel_run_start in the profile


def window_start(profile, now: dt.datetime, window: dt.timedelta | None = None) -> dt.datetime:
    """The board's window: ``--since`` when given, else the parallel run so far
    (what the gate judges), else the last 7 days."""
    if window is not None:
        return now - window
    start = profile.cutover.parallel_run_start
    if start is not None:
        return dt.datetime.combine(start, dt.time(), UTC)
    return now - DEFAULT_WINDOW


def checklist_rows(decision: gate.GateDecision) -> list[ChecklistRow]:
    """The gate's items as checklist rows: automatic ones first (as the gate
    orders them), then the profile's manual items with their sign-offs."""
    rows = []
    for item in decision.items:
        if item.kind == "manual":
            item_id = item.id.split(":", 1)[1] if item.id.startswith("checklist:") else item.id
            if item.status == "ok":
                status = "signed off"
            elif item.by:                     # a latest entry that is a revocation
                status = "revoked"
            else:
                status = "open"
            rows.append(ChecklistRow(item_id, item.title, "manual", item.status == "ok", status,
                                     by=item.by or "", at=item.at, note=item.note))
        else:
            status = {"ok": "passed", "block": "blocking", "info": "not measured"}.get(item.status, item.status)
            rows.append(ChecklistRow(item.id, item.title, "auto", item.status != "block", status,
                                     note=item.detail, at=item.at))
    return rows


def header_view(profile, decision: gate.GateDecision, now: dt.datetime) -> HeaderView:
    return HeaderView(site=profile.site, now=now, days_in=decision.parallel_days,
                      min_days=decision.min_parallel_days, notice_by=decision.notice_by,
                      disconnect_on=decision.disconnect_on, decision=decision.decision,
                      blocking=list(decision.blocking))


class BoardLoader:
    """Reads the window once per refresh and keeps what a sign-off does not
    change (runs, series, the history analysis), so a sign-off re-evaluates
    only the gate (milliseconds) instead of re-reading 30 days."""

    def __init__(self, profile, store, window: dt.timedelta | None = None) -> None:
        self.profile = profile
        self.store = store
        self.window = window
        self._runs: list = []
        self._series: dict | None = None
        self._gate_since: dt.datetime | None = None
        self._last: BoardData | None = None

    def load(self, now: dt.datetime) -> BoardData:
        """Full read: runs (failing checks only, plus each circuit's latest run
        in full, via harness.history.load_runs) and metric series in one
        json_extract pass (harness.history.load_series)."""
        t0 = time.perf_counter()
        profile, store = self.profile, self.store
        version = store.data_version()   # read first: a write during the read triggers another refresh
        since = window_start(profile, now, self.window)
        gate_since = gate_window_start(profile, now)
        first = min(since, gate_since)
        until = now + dt.timedelta(microseconds=1)
        runs = history.load_runs(store, profile.site, since=first, until=until)
        series = history.load_series(store, profile.site, since=first, until=until)
        shown = runs if first == since else [r for r in runs if r.started_at >= since]
        shown_series = series if (series is None or first == since) else _series_since(series, since)
        analysis = history.analyze(shown, profile, since=since, now=now, series=shown_series)
        plan = plan_profile(profile)
        required = (plan.required_down_mbps, plan.required_up_mbps)
        circuits = [circuit_view(profile, c, analysis.circuits[c.name], required) for c in profile.circuits]
        self._runs, self._series, self._gate_since = runs, series, gate_since
        decision = self._decide(now)
        self._last = BoardData(header=header_view(profile, decision, now), circuits=circuits,
                               checklist=checklist_rows(decision),
                               outages=outage_rows(analysis.all_outages()),
                               window_days=(now - since).total_seconds() / 86400, data_version=version,
                               load_s=time.perf_counter() - t0)
        return self._last

    def refresh_signoffs(self, now: dt.datetime) -> BoardData:
        """After a sign-off or revocation: the gate again over the runs already read."""
        if self._last is None:
            return self.load(now)
        t0 = time.perf_counter()
        version = self.store.data_version()
        decision = self._decide(now)
        last = self._last
        self._last = BoardData(header=header_view(self.profile, decision, now), circuits=last.circuits,
                               checklist=checklist_rows(decision), outages=last.outages,
                               window_days=last.window_days, data_version=version,
                               load_s=time.perf_counter() - t0)
        return self._last

    def _decide(self, now: dt.datetime) -> gate.GateDecision:
        gate_since = self._gate_since or gate_window_start(self.profile, now)
        gate_runs = [r for r in self._runs if r.started_at >= gate_since]
        gate_series = None if self._series is None else _series_since(self._series, gate_since)
        return gate.evaluate(self.profile, gate_runs, self.store.signoffs(self.profile.site), now,
                             series=gate_series)


def load_board(profile, store, now: dt.datetime, window: dt.timedelta | None = None) -> BoardData:
    """One-shot load (benchmarks, tests)."""
    return BoardLoader(profile, store, window).load(now)


def _series_since(series: dict, since: dt.datetime) -> dict:
    return {c: {k: [p for p in pts if p[0] >= since] for k, pts in m.items()} for c, m in series.items()}


def gate_window_start(profile, now: dt.datetime) -> dt.datetime:
    """The runs harness.gate.decide reads (kept in step with it)."""
    start = profile.cutover.parallel_run_start
    if start is not None:
        return dt.datetime.combine(start, dt.time(), UTC)
    return now - dt.timedelta(days=max(profile.cutover.min_parallel_days, 1))


