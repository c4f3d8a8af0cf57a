"""Fault tickets with the provider, judged: the stored tickets
(:meth:`harness.store.Store.tickets`) joined with the circuit's contract
(response and resolution classes, ``verify_hours``) and the runs after each fix.

One place turns a stored ticket into what every output shows (``cutover ticket
list``, the claim pack, the report's scorecard): the breaches named by
:func:`harness.contract.response_breach` / :func:`~harness.contract.resolution_breach`
and the verdict of :func:`harness.contract.fix_verified` on the runs the store
holds. The judgement is pure; this module only reads.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness import contract
from harness.history import circuit_runs, iso, outcome

if TYPE_CHECKING:
    from harness.store import TicketRecord


@dataclass
class JudgedTicket:
    record: TicketRecord
    ticket: contract.Ticket              # with verified / verification filled in
    response_breach: contract.Breach | None
    resolution_breach: contract.Breach | None

    @property
    def open(self) -> bool:
        return self.ticket.closed_at is None

    def to_dict(self) -> dict:
        r, t = self.record, self.ticket
        return {"id": t.id, "ref": t.ref, "site": r.site, "circuit": t.circuit, "severity": t.severity,
                "outage_id": t.outage_id, "opened_at": iso(t.opened_at), "responded_at": iso(t.responded_at),
                "resolved_at": iso(t.resolved_at), "closed_at": iso(t.closed_at), "open": self.open,
                "response_breach": self.response_breach.to_dict() if self.response_breach else None,
                "resolution_breach": self.resolution_breach.to_dict() if self.resolution_breach else None,
                "verified": t.verified, "verification": t.verification,
                "verify_run_id": r.verify_run_id, "verify_passed": r.verify_passed,
                "events": [{"what": e.what, "at": iso(e.at), "by": e.by, "note": e.note,
                            "recorded_at": iso(e.recorded_at)} for e in r.events]}


def terms_of(profile, circuit: str) -> tuple[contract.Terms, float]:
    """The circuit's contract terms and verify hours (empty terms for a circuit
    no longer in the profile: its tickets are listed, not judged)."""
    try:
        c = profile.circuit(circuit).contract
    except KeyError:
        return contract.Terms(), 4.0
    return c.terms(), c.verify_hours


def judge(store, profile, rec, now: dt.datetime) -> JudgedTicket:
    terms, hours = terms_of(profile, rec.circuit)
    verified, sentence = None, ""
    if rec.resolved_at is not None:
        runs = store.runs(rec.site, since=rec.resolved_at, until=rec.resolved_at + dt.timedelta(hours=hours),
                          circuit=rec.circuit)
        later = [(run.started_at, outcome(c)) for run, c in circuit_runs(runs, rec.circuit)
                 if run.id != rec.verify_run_id]
        verified, sentence = contract.fix_verified(rec.verify_passed, rec.verify_run_id, rec.resolved_at,
                                                   later, hours, now)
    t = contract.Ticket(id=rec.id, ref=rec.ref, circuit=rec.circuit, severity=rec.severity,
                        opened_at=rec.opened_at, responded_at=rec.responded_at, resolved_at=rec.resolved_at,
                        closed_at=rec.closed_at, outage_id=rec.outage_id, verified=verified,
                        verification=sentence)
    return JudgedTicket(rec, t, contract.response_breach(t, terms, now), contract.resolution_breach(t, terms, now))


def judged(store, profile, now: dt.datetime, circuit: str | None = None) -> list[JudgedTicket]:
    """Every ticket of the profile's site (of one circuit), oldest first."""
    return [judge(store, profile, rec, now) for rec in store.tickets(profile.site, circuit)]
