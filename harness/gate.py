"""The termination gate: may the old service be terminated, and by when must
the notice go out?

Conditions (each is a :class:`GateItem`; any ``block`` makes the decision NO-GO):

- ``parallel-run``: each new circuit has at least ``min_parallel_days``
  *covered* days since the parallel run started (``cutover.parallel_run_start``):
  a UTC day counts only when at least ``coverage_min_hours_per_day`` (default
  18) of its 24 hours hold a full run that measured it (harness.history
  ``Coverage``). Calendar days without evidence do not count: thin evidence
  blocks ("measured 1 of 14 required days").
- ``pass-rate``: each new circuit passed in at least ``pass_rate_pct`` of its
  *measured* hours (an hour with a failing run fails, one where the circuit
  did not answer is an outage; GO and WARN pass); the uncovered share is shown
  beside it. No measured hour at all is no evidence, which blocks.
- ``coverage:<circuit>`` (info): the coverage figure and the holes by start
  and end ("no measurements 2026-11-12 02:00 to 2026-11-14 09:00 UTC"). A hole
  blocks only through the two items above (fewer covered days, stale evidence).
- ``no-failure-24h``: no failing or unreachable run of a new circuit in the
  last 24 h, and at least one run in that time (stale evidence blocks too).
- ``capacity``: the latest capacity measurement of each new circuit in the
  window carries the planned calls. Not measured: shown, not blocking.
- ``checklist:failover``: also satisfied, without a signature, by a passing
  failover drill stored in the window (``cutover probe failover --profile``);
  a drill that failed after the sign-off blocks it again.
- ``checklist:<id>``: every manual item of ``cutover.checklist`` is signed off
  (its latest audit entry is a sign-off, not a revocation).

Dates (all calendar days, UTC):

- ``proven_on``: the day the new service counts as proven, dated from the
  evidence: the parallel run is complete the day after its
  ``min_parallel_days``-th covered day (of the new circuit with the fewest);
  not reached yet, it is projected as today + the covered days still missing.
  With a GO that is ``proven_on``. With a NO-GO the earliest it can be is
  today, so ``proven_on = max(parallel complete, today)``.
- ``disconnect_on``: the earliest day the old service may be disconnected:
  it must stay ``overlap_days`` after the new one is proven, and the notice
  takes ``termination_notice_days``, counted from today at the earliest:
  ``disconnect_on = max(proven_on + overlap_days, today + termination_notice_days)``.
- ``notice_by = disconnect_on - termination_notice_days``: the last day the
  written notice can be sent for that disconnect date (today when the notice
  period is what limits).
- ``overlap_days`` (result): ``disconnect_on - proven_on``, the overlap that
  disconnect date actually leaves (>= the profile's ``overlap_days``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from harness import history
from harness.suite import failover
from harness.verdicts import NETWORK, cause_of, fmt

UTC = dt.timezone.utc
RECENT_FAILURE_WINDOW = dt.timedelta(hours=24)
GO, NO_GO = "GO", "NO-GO"


@dataclass
class GateItem:
    id: str
    title: str
    kind: str                    # auto | manual
    status: str                  # ok | block | info
    detail: str                  # one line: what was found
    by: str | None = None        # manual items: who signed off
    at: dt.datetime | None = None
    note: str = ""

    def to_dict(self) -> dict:
        return {"id": self.id, "title": self.title, "kind": self.kind, "status": self.status,
                "detail": self.detail, "by": self.by, "at": history.iso(self.at), "note": self.note}


@dataclass
class GateDecision:
    site: str
    decision: str
    blocking: list[str]
    items: list[GateItem]
    today: dt.date
    parallel_run_start: dt.date | None
    parallel_days: int | None            # days since the parallel run started
    min_parallel_days: int
    parallel_complete_on: dt.date | None
    proven_on: dt.date
    notice_by: dt.date
    disconnect_on: dt.date
    overlap_days: int                    # overlap the disconnect date leaves after proven_on
    termination_notice_days: int
    pass_rates: dict[str, dict] = field(default_factory=dict)
    evaluated_at: dt.datetime | None = None
    coverage: dict[str, "history.Coverage"] = field(default_factory=dict)
    covered_days: int | None = None      # of the new circuit with the fewest

    @property
    def days_to_notice(self) -> int:
        return (self.notice_by - self.today).days

    @property
    def days_to_disconnect(self) -> int:
        return (self.disconnect_on - self.today).days

    def to_dict(self) -> dict:
        return {
            "site": self.site, "decision": self.decision, "blocking": list(self.blocking),
            "notice_by": self.notice_by.isoformat(), "disconnect_on": self.disconnect_on.isoformat(),
            "overlap_days": self.overlap_days, "proven_on": self.proven_on.isoformat(),
            "today": self.today.isoformat(),
            "parallel_run_start": self.parallel_run_start.isoformat() if self.parallel_run_start else None,
            "parallel_days": self.parallel_days, "min_parallel_days": self.min_parallel_days,
            "parallel_complete_on": (self.parallel_complete_on.isoformat()
                                     if self.parallel_complete_on else None),
            "termination_notice_days": self.termination_notice_days,
            "days_to_notice": self.days_to_notice, "days_to_disconnect": self.days_to_disconnect,
            "pass_rates": self.pass_rates, "items": [i.to_dict() for i in self.items],
            "evaluated_at": history.iso(self.evaluated_at),
            "covered_days": self.covered_days,
            "coverage": {n: c.to_dict() for n, c in self.coverage.items()},
        }


def _drill_item(item, rec, drills: list[dict]) -> GateItem | None:
    """The failover checklist item decided by stored drills (harness/suite/failover.py):
    the latest drill failed after any sign-off -> block; no sign-off and a passing
    drill -> ok (automatic). None: the sign-off alone decides."""
    if item.id != failover.FAILOVER_ITEM or not drills:
        return None
    latest = drills[-1]
    signed = rec is not None and not rec.revoked
    if not latest["passed"] and (not signed or latest["at"] > rec.at):
        return GateItem(f"checklist:{item.id}", item.title, "auto", "block",
                        failover.drill_sentence(latest), at=latest["at"])
    if not signed:
        good = [d for d in drills if d["passed"]]
        if good:
            return GateItem(f"checklist:{item.id}", item.title, "auto", "ok",
                            failover.drill_sentence(good[-1]), at=good[-1]["at"])
    return None


def _when(t: dt.datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def window_start(profile, now: dt.datetime) -> dt.datetime:
    """The gate judges runs from the start of the parallel run (00:00 UTC of
    ``parallel_run_start``); without one, the last ``min_parallel_days``."""
    start = profile.cutover.parallel_run_start
    if start is not None:
        return dt.datetime.combine(start, dt.time(), UTC)
    return now - dt.timedelta(days=max(profile.cutover.min_parallel_days, 1))


def decide(profile, store, now: dt.datetime | None = None) -> GateDecision:
    """Read the runs and sign-offs of the profile's site and decide, with what
    was known at ``now``: later runs, sign-offs and corrections do not count."""
    now = now or dt.datetime.now(UTC)
    since = window_start(profile, now)
    until = now + dt.timedelta(microseconds=1)
    # failing checks are all the gate reads (of the new circuits only); capacity
    # comes from the raw JSON in one small query
    new = [c.name for c in profile.circuits_by_role("new")]
    runs = store.runs(profile.site, since=since, until=until, checks="failing",
                      circuit=new[0] if len(new) == 1 else None)
    capacity = history.load_series(store, profile.site, since, until, keys=["capacity_calls"])
    drills = failover.drill_summaries(store.runs(profile.site, since=since, until=until, kind="drill",
                                                 checks="none"))
    return evaluate(profile, runs, store.signoffs(profile.site, as_of=now), now, series=capacity, drills=drills)


def _porting_item(name: str, runs) -> GateItem:
    """Automatic evidence for porting: the latest stored porting check of circuit ``name``."""
    title = f"Ported numbers ring on {name}"
    for r, rec in reversed(history.circuit_runs(runs, name)):
        call = (rec.raw or {}).get("call") or {}
        if call.get("porting"):
            ok = all(p.get("arrived") for p in call["porting"])
            return GateItem(f"porting:{name}", title, "auto", "ok" if ok else "block",
                            f"{call.get('porting_summary')} (checked {_when(r.started_at)})", at=r.started_at)
    return GateItem(f"porting:{name}", title, "auto", "block",
                    f"ported numbers of {name} not checked in the parallel run (the call step of cutover check)")


def evaluate(profile, runs, signoffs: dict, now: dt.datetime, series: dict | None = None,
             drills: list[dict] | None = None) -> GateDecision:
    """Pure: the decision from runs (since the parallel run started) and the
    current sign-off state per item. ``series`` as from history.load_series
    (only ``capacity_calls`` is read); without it, from the runs' raw JSON.
    A run still in progress at ``now`` does not count (history.settled)."""
    runs = history.settled(list(runs), now)
    cut = profile.cutover
    today = now.astimezone(UTC).date()
    items: list[GateItem] = []
    new_circuits = [c.name for c in profile.circuits_by_role("new")]

    # -- parallel run duration, counted in covered days (module doc)
    start = cut.parallel_run_start
    days = (today - start).days if start else None
    at_day = days if days is not None else 0     # read only where start is set
    min_hours = history.min_hours_per_day(profile)
    cov = {name: history.coverage(runs, name, window_start(profile, now), now, min_hours)
           for name in new_circuits}
    covered = min((c.covered_days for c in cov.values()), default=None)
    title = f"Parallel run measured {cut.min_parallel_days} days"
    rule = f"a day counts when at least {min_hours} of its 24 hours hold a full run"
    nth = [c.covered_day(cut.min_parallel_days) for c in cov.values()] if cut.min_parallel_days else []
    reached = [d for d in nth if d is not None]
    complete_on = None
    if start is not None and cut.min_parallel_days == 0:
        complete_on = start
    elif start is not None and nth and len(reached) == len(nth):
        complete_on = max(reached) + dt.timedelta(days=1)
    if start is None:
        items.append(GateItem("parallel-run", title, "auto",
                              "block", "cutover.parallel_run_start is not set in the profile"))
    elif covered is None:   # no new circuit: the calendar is all there is
        complete_on = start + dt.timedelta(days=cut.min_parallel_days)
        items.append(GateItem("parallel-run", title, "auto", "block" if at_day < cut.min_parallel_days else "ok",
                              f"parallel run is at day {max(at_day, 0)} of {cut.min_parallel_days} "
                              "(no new circuit in the profile)"))
    elif covered < cut.min_parallel_days:
        worst = min(cov, key=lambda n: cov[n].covered_days)
        items.append(GateItem("parallel-run", title, "auto", "block",
                              f"measured {covered} of {cut.min_parallel_days} required days on {worst} "
                              f"(parallel run at day {max(at_day, 0)}; {rule})"))
    else:
        assert complete_on is not None   # every new circuit has covered_days >= min_parallel_days days
        items.append(GateItem("parallel-run", title, "auto", "ok",
                              f"measured {covered} days of {cut.min_parallel_days} required "
                              f"(complete since {complete_on.isoformat()}; {rule})"))

    # -- pass rate of each new circuit over its measured hours
    pass_rates: dict[str, dict] = {}
    for name in new_circuits:
        c = cov[name]
        passed, measured, pct = c.count("passed"), c.measured, c.pass_pct
        runs_passed, runs_measured = history.pass_rate(runs, name)
        pass_rates[name] = {"passed": runs_passed, "runs": runs_measured,
                            "pass_pct": pct, "passed_hours": passed, "measured_hours": measured,
                            "uncovered_pct": c.uncovered_pct}
        title = f"New circuit {name} passed >= {fmt(cut.pass_rate_pct)} % of measured hours"
        uncovered = f"; {fmt(c.uncovered_pct or 0.0)} % of {len(c.slots)} hours had no evidence"
        if measured == 0:
            items.append(GateItem(f"pass-rate:{name}", title, "auto", "block",
                                  f"no measured hour of circuit {name} since the parallel run started"))
        elif pct < cut.pass_rate_pct:
            items.append(GateItem(f"pass-rate:{name}", title, "auto", "block",
                                  f"circuit {name} passed {fmt(pct)} % of measured hours ({passed} of "
                                  f"{measured}) < {fmt(cut.pass_rate_pct)} % required{uncovered}"))
        else:
            items.append(GateItem(f"pass-rate:{name}", title, "auto", "ok",
                                  f"circuit {name} passed {fmt(pct)} % of measured hours ({passed} of "
                                  f"{measured}){uncovered}"))
        items.append(GateItem(f"coverage:{name}", f"Evidence coverage of {name}", "auto", "info",
                              c.summary()))

    # -- no failing run in the last 24 h
    recent_from = now - RECENT_FAILURE_WINDOW
    for name in new_circuits:
        # runs where our side could not measure (gaps) are not evidence either way
        recent = [(r, rec) for r, rec in history.circuit_runs(runs, name)
                  if recent_from <= r.started_at <= now and history.outcome(rec) != "gap"]
        bad = [(r, rec) for r, rec in recent if history.outcome(rec) != "pass"]
        title = f"No failing run of {name} in the last 24 h"
        if not recent:
            items.append(GateItem(f"no-failure-24h:{name}", title, "auto", "block",
                                  f"no run of circuit {name} in the last 24 h (evidence is stale)"))
        elif bad:
            r, rec = bad[-1]
            worst = next((c for c in rec.checks if c.status in ("fail", "error")
                          and cause_of(c) == NETWORK), None)
            why = f": {worst.id}: {worst.reason}" if worst else ""
            items.append(GateItem(f"no-failure-24h:{name}", title, "auto", "block",
                                  f"{len(bad)} failing run(s) of {name} in the last 24 h, latest "
                                  f"{_when(r.started_at)}{why}"))
        else:
            items.append(GateItem(f"no-failure-24h:{name}", title, "auto", "ok",
                                  f"{len(recent)} run(s) of {name} in the last 24 h, all passed"))

    # -- capacity carries the planned calls (when measured)
    planned = profile.planned.calls
    cap_metric = history.METRIC_BY_KEY["capacity_calls"]
    for name in new_circuits:
        if series is not None:
            cap = series.get(name, {}).get("capacity_calls", [])
        else:
            cap = history.metric_series(runs, name, cap_metric)
        title = f"Capacity of {name} >= {planned} planned calls"
        if not cap:
            items.append(GateItem(f"capacity:{name}", title, "auto", "info",
                                  f"capacity of {name} not measured in the parallel run"))
            continue
        at, calls = cap[-1]
        # the stored capacity.calls check of that run decides (one judgement: a ramp
        # stopped by our own sender is a gap, not a short circuit); runs carry their
        # failing checks only, so no such check there means it passed or warned;
        # a history without the check at all falls back to the same comparison
        stored = next((c for r, rec in history.circuit_runs(runs, name, full_only=False) if r.started_at == at
                       for c in rec.checks if c.id == "capacity.calls"), None)
        if stored is not None and stored.status == "error":
            items.append(GateItem(f"capacity:{name}", title, "auto", "info",
                                  f"capacity of {name} not measured in its latest run ({stored.reason})", at=at))
        elif (stored.status == "fail") if stored is not None else calls < planned:
            items.append(GateItem(f"capacity:{name}", title, "auto", "block",
                                  f"circuit {name} carried {fmt(calls)} calls < {planned} planned "
                                  f"(measured {_when(at)})", at=at))
        else:
            items.append(GateItem(f"capacity:{name}", title, "auto", "ok",
                                  f"circuit {name} carried {fmt(calls)} calls >= {planned} planned", at=at))

    # -- ported numbers ring on the new trunk (the call step's porting check, latest run)
    for circ in profile.circuits_by_role("new"):
        if circ.ported_numbers:
            items.append(_porting_item(circ.name, runs))

    # -- manual checklist
    for item in cut.checklist:
        rec = signoffs.get(item.id)
        drill = _drill_item(item, rec, drills or [])
        if drill is not None:
            items.append(drill)
        elif rec is None:
            items.append(GateItem(f"checklist:{item.id}", item.title, "manual", "block",
                                  f"checklist item {item.id!r} ({item.title}) is not signed off"))
        elif rec.revoked:
            items.append(GateItem(f"checklist:{item.id}", item.title, "manual", "block",
                                  f"checklist item {item.id!r} ({item.title}): sign-off revoked by {rec.by} "
                                  f"on {rec.at.date().isoformat()}", by=rec.by, at=rec.at, note=rec.note))
        else:
            items.append(GateItem(f"checklist:{item.id}", item.title, "manual", "ok",
                                  f"signed off by {rec.by} on {rec.at.date().isoformat()}",
                                  by=rec.by, at=rec.at, note=rec.note))

    blocking = [i.detail for i in items if i.status == "block"]
    decision = NO_GO if blocking else GO

    # -- dates (module doc)
    if complete_on is None:
        missing = cut.min_parallel_days - (covered or 0) if start is not None else cut.min_parallel_days
        complete_for_dates = today + dt.timedelta(days=max(missing, 0))
    else:
        complete_for_dates = complete_on
    proven_on = complete_for_dates if decision == GO else max(complete_for_dates, today)
    disconnect_on = max(proven_on + dt.timedelta(days=cut.overlap_days),
                        today + dt.timedelta(days=cut.termination_notice_days))
    notice_by = disconnect_on - dt.timedelta(days=cut.termination_notice_days)

    return GateDecision(
        site=profile.site, decision=decision, blocking=blocking, items=items, today=today,
        parallel_run_start=start, parallel_days=days, min_parallel_days=cut.min_parallel_days,
        parallel_complete_on=complete_on, proven_on=proven_on, notice_by=notice_by,
        disconnect_on=disconnect_on, overlap_days=(disconnect_on - proven_on).days,
        termination_notice_days=cut.termination_notice_days, pass_rates=pass_rates, evaluated_at=now,
        coverage=cov, covered_days=covered)
