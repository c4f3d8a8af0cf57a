"""The provider's contract, judged: ticket response and resolution against the
support classes, availability from measured time, and the provider scorecard.

Half of a provider change is the service around the line. A support contract
names response classes ("P1: respond within 1 h, resolve within 4 h"), an
availability figure and a claim window; this module turns a circuit's tickets
and its measured history into the figures that say whether the provider kept
it, so an engineer can hold the old and the new provider side by side before
the old one is terminated.

Rules (docs/provider.md says the same for users):

- **Response and resolution** are measured from the ticket's ``opened_at`` to
  its first ``responded_at`` / ``resolved_at``, and judged against the class's
  hours: a 4 h class answered after exactly 4 h 00 min keeps the contract, one
  answered a minute later breaches it. A ticket still waiting is judged
  against ``now``: an open P1 with no response after 2 h is already breached.
- **Availability** counts only measured time. Each stretch of the parallel run
  is up (a passing or warning run covers it), down (inside an outage), or not
  measured (no evidence: a gap of ours, never the provider's, never up).
  availability = up / (up + down); the measured share is shown beside it.
- **Mean time to restore** is the mean duration of the outages that ended in
  the window.

Pure: no I/O.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Iterable

HOUR_S = 3600.0


def fmt_duration(seconds: float) -> str:
    """'6 h 12 min', '45 min', '2 d 3 h' (no seconds: tickets are judged in minutes)."""
    minutes = int(round(seconds / 60.0))
    d, rem = divmod(minutes, 24 * 60)
    h, m = divmod(rem, 60)
    if d:
        return f"{d} d {h} h" if h else f"{d} d"
    if h:
        return f"{h} h {m} min" if m else f"{h} h"
    return f"{m} min"


def fmt_hours(hours: float) -> str:
    return fmt_duration(hours * HOUR_S)


@dataclass(frozen=True)
class Terms:
    """A circuit's support contract (the profile's ``contract:``)."""
    availability_pct: float | None = None
    response_hours: dict[str, float] = field(default_factory=dict)    # class -> hours
    resolve_hours: dict[str, float] = field(default_factory=dict)


@dataclass
class Ticket:
    id: int
    ref: str                               # the provider's reference, "NW-4411"
    circuit: str
    severity: str                          # the user's class name, "P2"
    opened_at: dt.datetime
    responded_at: dt.datetime | None = None
    resolved_at: dt.datetime | None = None
    closed_at: dt.datetime | None = None
    outage_id: str | None = None
    verified: bool | None = None           # None: not verified yet; False: the fix did not hold
    verification: str = ""                 # what the verification found, one line


@dataclass(frozen=True)
class Breach:
    kind: str            # "response" | "resolution"
    took_s: float        # elapsed (to now while still waiting)
    allowed_s: float
    waiting: bool        # no response / resolution yet
    sentence: str

    def to_dict(self) -> dict:
        return {"kind": self.kind, "took_s": round(self.took_s), "allowed_s": round(self.allowed_s),
                "waiting": self.waiting, "reason": self.sentence}


def _judge(ticket: Ticket, kind: str, done_at: dt.datetime | None, hours: dict[str, float],
           now: dt.datetime) -> Breach | None:
    allowed_h = hours.get(ticket.severity)
    if allowed_h is None:
        return None
    end = done_at or now
    took = (end - ticket.opened_at).total_seconds()
    allowed = allowed_h * HOUR_S
    if took <= allowed:
        return None
    what = "first response" if kind == "response" else "resolution"
    if done_at is None:
        sentence = (f"{ticket.severity} ticket {ticket.ref}: no {what} after {fmt_duration(took)}, "
                    f"contract {fmt_hours(allowed_h)}")
    else:
        sentence = (f"{ticket.severity} ticket {ticket.ref}: {what} after {fmt_duration(took)}, "
                    f"contract {fmt_hours(allowed_h)}")
    return Breach(kind, took, allowed, done_at is None, sentence)


def response_breach(ticket: Ticket, terms: Terms, now: dt.datetime) -> Breach | None:
    """None when the first response came (or may still come) within the class's hours."""
    return _judge(ticket, "response", ticket.responded_at, terms.response_hours, now)


def resolution_breach(ticket: Ticket, terms: Terms, now: dt.datetime) -> Breach | None:
    return _judge(ticket, "resolution", ticket.resolved_at, terms.resolve_hours, now)


# ---------------------------------------------------------------- post-fix verification

def fix_verified(verify_passed: bool | None, verify_run_id: int | None, resolved_at: dt.datetime,
                 later: list[tuple[dt.datetime, str]], verify_hours: float,
                 now: dt.datetime) -> tuple[bool | None, str]:
    """Did the fix hold? ``verify_passed``: the check run started at resolution
    (None: none was run). ``later``: (start, outcome) of the circuit's scheduled
    full runs after it, outcome as :func:`harness.history.outcome` (pass | fail |
    unreachable | gap). True only when the verification run passed and every run
    of the next ``verify_hours`` did too, with at least one of them; False as soon
    as one failed; None while the hours are still running or without evidence."""
    if verify_passed is None:
        return None, "not verified: no check run at resolution"
    run = "the check run at resolution" + ("" if verify_run_id is None else f" (run {verify_run_id})")
    if not verify_passed:
        return False, f"verification failed: {run} did not pass"
    until = resolved_at + dt.timedelta(hours=verify_hours)
    window = [(t, o) for t, o in sorted(later) if resolved_at < t <= until and o != "gap"]
    for t, o in window:
        if o != "pass":
            return False, (f"the fix did not hold: the run at {t:%Y-%m-%d %H:%M} UTC "
                           f"{'failed' if o == 'fail' else 'found the circuit unreachable'}")
    if now < until:
        return None, (f"holding so far: {run} and {len(window)} later run(s) passed; "
                      f"verified at {until:%Y-%m-%d %H:%M} UTC if the runs until then pass")
    if not window:
        return None, (f"not verified: no scheduled run measured the circuit in the {fmt_hours(verify_hours)} "
                      "after the fix")
    return True, f"verified: {run} and {len(window)} scheduled run(s) in the next {fmt_hours(verify_hours)} passed"


# ---------------------------------------------------------------- availability

UP, DOWN, GAP = "up", "down", "gap"


@dataclass(frozen=True)
class Span:
    start: dt.datetime
    end: dt.datetime
    state: str            # up | down | gap

    @property
    def seconds(self) -> float:
        return max(0.0, (self.end - self.start).total_seconds())


@dataclass(frozen=True)
class Availability:
    up_s: float
    down_s: float
    gap_s: float

    @property
    def measured_s(self) -> float:
        return self.up_s + self.down_s

    @property
    def pct(self) -> float | None:
        """Up share of measured time; None when nothing was measured."""
        return None if self.measured_s <= 0 else 100.0 * self.up_s / self.measured_s

    @property
    def measured_pct(self) -> float | None:
        total = self.measured_s + self.gap_s
        return None if total <= 0 else 100.0 * self.measured_s / total

    def to_dict(self) -> dict:
        return {"availability_pct": None if self.pct is None else round(self.pct, 3),
                "measured_pct": None if self.measured_pct is None else round(self.measured_pct, 1),
                "up_s": round(self.up_s), "down_s": round(self.down_s), "gap_s": round(self.gap_s)}


def availability(spans: Iterable[Span], since: dt.datetime, until: dt.datetime) -> Availability:
    """Sum the spans clipped to [since, until); where spans overlap, down wins over up
    and both over gap (an outage is never hidden by a passing run of another step)."""
    rank = {GAP: 0, UP: 1, DOWN: 2}
    edges = {since, until}
    clipped = []
    for s in spans:
        a, b = max(s.start, since), min(s.end, until)
        if b > a:
            clipped.append(Span(a, b, s.state))
            edges.update((a, b))
    points = sorted(edges)
    totals = {UP: 0.0, DOWN: 0.0, GAP: 0.0}
    for a, b in zip(points, points[1:]):
        state = GAP
        for s in clipped:
            if s.start <= a and s.end >= b and rank[s.state] > rank[state]:
                state = s.state
        totals[state] += (b - a).total_seconds()
    return Availability(totals[UP], totals[DOWN], totals[GAP])


# ---------------------------------------------------------------- the scorecard

@dataclass
class ClassFigures:
    """Tickets of one class: counts, times and breaches."""
    severity: str
    tickets: int = 0
    response_s: list[float] = field(default_factory=list)
    resolve_s: list[float] = field(default_factory=list)
    response_breaches: int = 0
    resolution_breaches: int = 0

    def to_dict(self) -> dict:
        def mean(xs: list[float]) -> float | None:
            return round(sum(xs) / len(xs)) if xs else None
        return {"severity": self.severity, "tickets": self.tickets,
                "mean_response_s": mean(self.response_s), "mean_resolve_s": mean(self.resolve_s),
                "response_breaches": self.response_breaches,
                "resolution_breaches": self.resolution_breaches}


@dataclass
class Scorecard:
    circuit: str
    provider: str
    role: str
    availability: Availability
    contracted_pct: float | None
    outages: int
    outage_s: float
    mttr_s: float | None
    classes: dict[str, ClassFigures]
    breaches: list[Breach]
    fixes_verified: int
    fixes_failed: int
    fixes_unverified: int
    claims_filed: int
    claims_missed: int
    not_held: list[str] = field(default_factory=list)   # "P1 ticket OLD-7: verification failed: ..."

    @property
    def meets_availability(self) -> bool | None:
        pct = self.availability.pct
        if pct is None or self.contracted_pct is None:
            return None
        return pct >= self.contracted_pct

    def to_dict(self) -> dict:
        return {"circuit": self.circuit, "provider": self.provider, "role": self.role,
                **self.availability.to_dict(), "contracted_pct": self.contracted_pct,
                "meets_availability": self.meets_availability,
                "outages": self.outages, "outage_s": round(self.outage_s),
                "mttr_s": None if self.mttr_s is None else round(self.mttr_s),
                "tickets": {k: v.to_dict() for k, v in sorted(self.classes.items())},
                "breaches": [b.to_dict() for b in self.breaches],
                "fixes": {"verified": self.fixes_verified, "failed": self.fixes_failed,
                          "unverified": self.fixes_unverified, "not_held": list(self.not_held)},
                "claims": {"filed": self.claims_filed, "missed": self.claims_missed}}


def scorecard(*, circuit: str, provider: str, role: str, terms: Terms, spans: list[Span],
              outage_durations_s: list[tuple[float, bool]], tickets: list[Ticket],
              claims_filed: int, claims_missed: int, since: dt.datetime, until: dt.datetime,
              now: dt.datetime) -> Scorecard:
    """``outage_durations_s``: (duration, ended) per outage in the window."""
    ended = [d for d, done in outage_durations_s if done]
    classes: dict[str, ClassFigures] = {}
    breaches: list[Breach] = []
    for t in tickets:
        cf = classes.setdefault(t.severity, ClassFigures(t.severity))
        cf.tickets += 1
        if t.responded_at:
            cf.response_s.append((t.responded_at - t.opened_at).total_seconds())
        if t.resolved_at:
            cf.resolve_s.append((t.resolved_at - t.opened_at).total_seconds())
        rb = response_breach(t, terms, now)
        if rb:
            cf.response_breaches += 1
            breaches.append(rb)
        sb = resolution_breach(t, terms, now)
        if sb:
            cf.resolution_breaches += 1
            breaches.append(sb)
    resolved = [t for t in tickets if t.resolved_at]
    return Scorecard(
        circuit=circuit, provider=provider, role=role,
        availability=availability(spans, since, until), contracted_pct=terms.availability_pct,
        outages=len(outage_durations_s), outage_s=sum(d for d, _ in outage_durations_s),
        mttr_s=(sum(ended) / len(ended)) if ended else None, classes=classes, breaches=breaches,
        fixes_verified=sum(1 for t in resolved if t.verified is True),
        fixes_failed=sum(1 for t in resolved if t.verified is False),
        fixes_unverified=sum(1 for t in resolved if t.verified is None),
        claims_filed=claims_filed, claims_missed=claims_missed,
        not_held=[f"{t.severity} ticket {t.ref}: {t.verification}" for t in resolved if t.verified is False])
