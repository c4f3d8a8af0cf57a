"""Everything the board shows, read once per refresh and turned into view
models (harness.tui.model). Key presses never call this; refreshes do.

Two windows:

- the parallel run (what ``cutover gate`` judges, from
  ``cutover.parallel_run_start``): runs with their failing checks only, plus
  each circuit's latest run in full (harness.history.load_runs) -> pass
  rates, daily rates, the outage log, the gate and the latest problems;
- the trend window (``--since``, default the last 7 days): metric values for
  the sparklines, read in one json_extract pass (harness.history.load_series)
  instead of one raw JSON blob per run.

Why: with 30 days x 3 circuits at 5-minute intervals (~26k circuit results)
the board must open in < 2 s. A sign-off changes only the gate, so
:meth:`BoardLoader.refresh_signoffs` re-evaluates it over the runs already read.
"""

from __future__ import annotations

import datetime as dt
import time

from harness import gate, history
from harness.suite import failover
from harness.planning import plan_profile
from harness.tui.model import BoardData, ChecklistRow, HeaderView, circuit_view, outage_rows

UTC = dt.timezone.utc
TREND_WINDOW = dt.timedelta(days=7)   # sparklines: a week is ~3 h per cell at 160 columns

# harness.history.METRICS keys the circuit panels draw (load_series reads only these)
PANEL_METRICS = ("rtt_p50_ms", "jitter_up_ms", "jitter_down_ms", "loss_up_pct", "loss_down_pct", "mos",
                 "down_mbps", "up_mbps", "capacity_calls")


def gate_window_start(profile, now: dt.datetime) -> dt.datetime:
    """The runs harness.gate judges (the parallel run so far)."""
    return gate.window_start(profile, now)


def trend_start(now: dt.datetime, window: dt.timedelta | None = None) -> dt.datetime:
    """Start of the sparklines' window: ``--since``, default the last 7 days."""
    return now - (window or TREND_WINDOW)


def checklist_rows(decision: gate.GateDecision) -> list[ChecklistRow]:
    """The gate's items as checklist rows, what still blocks first (so it is
    visible at 80x24 without scrolling), each group in the gate's order:
    automatic items, then the profile's manual items with their sign-offs."""
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
    return [r for r in rows if not r.ok] + [r for r in rows if r.ok]


def header_view(profile, decision: gate.GateDecision, now: dt.datetime) -> HeaderView:
    # days that count are covered days (measured), not calendar days
    days_in = decision.covered_days if decision.parallel_run_start and decision.covered_days is not None \
        else decision.parallel_days
    return HeaderView(site=profile.site, now=now, days_in=days_in,
                      min_days=decision.min_parallel_days, notice_by=decision.notice_by,
                      disconnect_on=decision.disconnect_on, decision=decision.decision,
                      blocking=list(decision.blocking))


class BoardLoader:
    def __init__(self, profile, store, window: dt.timedelta | None = None) -> None:
        self.profile = profile
        self.store = store
        self.window = window            # trend window (--since); None: TREND_WINDOW
        self._runs: list = []
        self._capacity: dict | None = None
        self._drills: list[dict] = []     # stored failover drills (the failover checklist item)
        self._last: BoardData | None = None

    def load(self, now: dt.datetime, version: int | None = None) -> BoardData:
        """Full read of both windows (module doc). ``version``: the
        data_version the caller polls with, read before this call (PRAGMA
        data_version is per connection); default: this store's."""
        t0 = time.perf_counter()
        profile, store, site = self.profile, self.store, self.profile.site
        if version is None:
            version = store.data_version(site)   # read first: a write during the read triggers another refresh
        gate_since = gate_window_start(profile, now)
        trend_since = trend_start(now, self.window)
        until = now + dt.timedelta(microseconds=1)
        runs = history.load_runs(store, site, since=gate_since, until=until)
        series = history.load_series(store, site, since=trend_since, until=until, keys=PANEL_METRICS)
        capacity = history.load_series(store, site, since=gate_since, until=until, keys=["capacity_calls"])
        analysis = history.analyze(runs, profile, since=gate_since, now=now, series=series)
        plan = plan_profile(profile)
        required = (plan.required_down_mbps, plan.required_up_mbps)
        # the sparklines' time axis: the trend window, from the first measurement in it
        firsts = [pts[0][0] for c in analysis.circuits.values() for pts in c.series.values() if pts]
        axis = (max([trend_since] + ([min(firsts)] if firsts else [])), now)
        circuits = [circuit_view(profile, c, analysis.circuits[c.name], required, axis) for c in profile.circuits]
        self._runs, self._capacity = runs, capacity
        self._drills = failover.drill_summaries(store.runs(site, since=gate_since, until=until, kind="drill",
                                                           checks="none"))
        decision = self._decide(now, store.signoffs(site, as_of=now))
        from harness.reports import provider
        scorecard = provider.table(provider.build(profile, store, analysis, gate_since, now))
        self._last = BoardData(header=header_view(profile, decision, now), circuits=circuits,
                               checklist=checklist_rows(decision),
                               outages=outage_rows(analysis.all_outages(), store.claims(site)),
                               window_days=(now - trend_since).total_seconds() / 86400, data_version=version,
                               load_s=time.perf_counter() - t0, scorecard=scorecard)
        return self._last

    def refresh_signoffs(self, now: dt.datetime, signoffs: dict, version: int | None = None) -> BoardData:
        """After a sign-off or revocation: the gate again over the runs already
        read, with ``signoffs`` (Store.signoffs) as the caller just read them."""
        if self._last is None:
            return self.load(now, version)
        t0 = time.perf_counter()
        decision = self._decide(now, signoffs)
        last = self._last
        self._last = BoardData(header=header_view(self.profile, decision, now), circuits=last.circuits,
                               checklist=checklist_rows(decision), outages=last.outages,
                               window_days=last.window_days,
                               data_version=last.data_version if version is None else version,
                               load_s=time.perf_counter() - t0, scorecard=last.scorecard)
        return self._last

    def _decide(self, now: dt.datetime, signoffs: dict) -> gate.GateDecision:
        return gate.evaluate(self.profile, self._runs, signoffs, now, series=self._capacity,
                             drills=self._drills)


def placeholder(profile, now: dt.datetime) -> BoardData:
    """What the board shows for the second or two the first read of a long
    history takes: the profile's circuits without figures, no decision yet."""
    plan = plan_profile(profile)
    required = (plan.required_down_mbps, plan.required_up_mbps)
    empty = history.CircuitHistory(name="", role="", provider="", runs=0, passed=0, latest_verdict=None,
                                   latest_at=None)
    circuits = [circuit_view(profile, c, empty, required) for c in profile.circuits]
    for view in circuits:
        view.loading = True
    header = HeaderView(site=profile.site, now=now, days_in=None, min_days=profile.cutover.min_parallel_days,
                        notice_by=None, disconnect_on=None, decision="…", blocking=["reading the history…"])
    return BoardData(header=header, circuits=circuits, checklist=[], outages=[], window_days=0.0,
                     data_version=None, loaded=False)


def load_board(profile, store, now: dt.datetime, window: dt.timedelta | None = None) -> BoardData:
    """One-shot load (benchmarks, tests)."""
    return BoardLoader(profile, store, window).load(now)
