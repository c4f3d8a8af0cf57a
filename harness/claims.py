"""SLA claim packs: one outage, the evidence that opened it, the contract clause
and the deadline, as a self-contained HTML page and a JSON file an engineer can
attach to the claim.

Providers grant credits only when an outage is claimed in time and backed by
evidence. cutover already has both: the outage log (with its claim deadline,
from the profile's ``cutover.sla_claim_hours``) and every run's stored checks.
A pack puts them on one page: site, circuit, provider, the outage's start, end
and duration, the failing checks with their figures, the runs just before and
just after (the line worked, then did not, then did again), the nearest path
trace, the contract clause, the claim deadline and its state, and the fault
ticket if one was raised.

Every user-supplied string (site, provider, notes, check reasons) is escaped
for HTML in one place (:func:`_e`); the page has no scripts and no external
URLs, so it opens offline and renders the same in any mail client's viewer.

Rendering is pure; :func:`build` reads the store.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from html import escape
from typing import Any

from harness.history import iso

UTC = dt.timezone.utc
OPEN, CLAIMED, PASSED = "open", "claimed", "deadline passed"


def claim_state(claim_by: dt.datetime | None, claimed_at: dt.datetime | None, now: dt.datetime) -> str:
    """open (claimable until claim_by), claimed, or deadline passed."""
    if claimed_at is not None:
        return CLAIMED
    if claim_by is not None and now > claim_by:
        return PASSED
    return OPEN


def _e(value: Any) -> str:
    """The one place HTML text is escaped (quotes too: values also go into attributes)."""
    return escape("" if value is None else str(value), quote=True)


@dataclass
class ClaimPack:
    site: str
    circuit: str
    provider: str
    role: str
    outage: dict                         # history.Outage.to_dict(): id, start, end, duration_s, kind, ...
    evidence: list[dict]                 # failing checks: {at, id, status, measured, required, unit, reason}
    runs_before: list[dict]              # [{at, verdict}] just before the outage
    runs_after: list[dict]               # just after it ended
    path: dict | None                    # the nearest stored path trace (raw probe JSON), if any
    clause: dict                         # {sla_claim_hours, availability_pct, response_hours, resolve_hours}
    claim_by: dt.datetime | None
    state: str
    ticket: dict | None
    generated_at: dt.datetime
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"site": self.site, "circuit": self.circuit, "provider": self.provider, "role": self.role,
                "outage": self.outage, "evidence": self.evidence, "runs_before": self.runs_before,
                "runs_after": self.runs_after, "path": self.path, "contract": self.clause,
                "claim_by": iso(self.claim_by), "state": self.state, "ticket": self.ticket,
                "generated_at": iso(self.generated_at), "notes": self.notes}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    def to_html(self) -> str:
        o = self.outage
        rows = [("Site", self.site), ("Circuit", f"{self.circuit} ({self.role})"),
                ("Provider", self.provider or "not named in the profile"),
                ("Outage", o.get("id")), ("Start", o.get("start")),
                ("End", o.get("end") or "ongoing"),
                ("Duration", _duration(o.get("duration_s"))),
                ("What failed", o.get("kind")),
                ("Claim deadline", iso(self.claim_by) or "none"), ("State", self.state)]
        head = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
        ev = "".join(
            f"<tr><td>{_e(c.get('at'))}</td><td>{_e(c.get('id'))}</td><td>{_e(c.get('status'))}</td>"
            f"<td>{_e(_q(c.get('measured'), c.get('unit')))}</td><td>{_e(_q(c.get('required'), c.get('unit')))}</td>"
            f"<td>{_e(c.get('reason'))}</td></tr>" for c in self.evidence) or \
            '<tr><td colspan="6">no failing check stored (the circuit did not answer at all)</td></tr>'
        around = "".join(f"<tr><td>{_e(label)}</td><td>{_e(r.get('at'))}</td><td>{_e(r.get('verdict'))}</td></tr>"
                         for label, runs in (("before", self.runs_before), ("after", self.runs_after))
                         for r in runs) or '<tr><td colspan="3">no runs stored around the outage</td></tr>'
        clause = "".join(f"<li>{_e(k)}: {_e(v)}</li>" for k, v in self.clause.items() if v not in (None, {}, []))
        path = "<p>No path trace stored near the outage.</p>"
        if self.path:
            hops = self.path.get("hops") or []
            path = ("<table><thead><tr><th>hop</th><th>address</th><th>RTT ms</th><th>loss %</th></tr></thead><tbody>"
                    + "".join(f"<tr><td>{_e(h.get('ttl', h.get('hop')))}</td><td>{_e(h.get('address'))}</td>"
                              f"<td>{_e(h.get('rtt_ms'))}</td><td>{_e(h.get('loss_pct'))}</td></tr>" for h in hops)
                    + "</tbody></table>")
        ticket = "<p>No fault ticket recorded.</p>"
        if self.ticket:
            t = self.ticket
            ticket = ("<table>" + "".join(f"<tr><th>{_e(k)}</th><td>{_e(t.get(k))}</td></tr>"
                                          for k in ("ref", "severity", "opened_at", "responded_at", "resolved_at",
                                                    "verified"))
                      + "".join(f"<tr><th>note</th><td>{_e(n.get('note'))} ({_e(n.get('by'))}, {_e(n.get('at'))})"
                                f"</td></tr>" for n in t.get("events", []) if n.get("note"))
                      + "</table>")
        notes = "".join(f"<li>{_e(n)}</li>" for n in self.notes)
        return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>SLA claim: {_e(self.site)} / {_e(self.circuit)} / {_e(o.get('id'))}</title>
<style>{CSS}</style></head><body>
<h1>SLA claim evidence: {_e(self.site)}</h1>
<p class="meta">Outage {_e(o.get('id'))} on circuit {_e(self.circuit)}, generated {_e(iso(self.generated_at))} by cutover.</p>
<p class="state {_e(self.state.replace(' ', '-'))}">Claim {_e(self.state)}{'' if self.claim_by is None else ': claim by ' + _e(iso(self.claim_by))}</p>
<h2>The outage</h2><table>{head}</table>
<h2>Evidence: the failing checks</h2>
<table><thead><tr><th>at</th><th>check</th><th>status</th><th>measured</th><th>required</th><th>reason</th></tr></thead>
<tbody>{ev}</tbody></table>
<h2>Runs just before and after</h2>
<table><thead><tr><th></th><th>at</th><th>verdict</th></tr></thead><tbody>{around}</tbody></table>
<h2>Nearest path trace</h2>{path}
<h2>The contract</h2><ul>{clause or '<li>no contract terms in the profile</li>'}</ul>
<h2>Fault ticket</h2>{ticket}
{'<h2>Notes</h2><ul>' + notes + '</ul>' if notes else ''}
</body></html>
"""  # noqa: E501 (the page's HTML lines)


CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:980px;
color:#1d232a;padding:0 16px}h1{font-size:22px;margin:0 0 4px}
h2{font-size:17px;margin:24px 0 8px;border-bottom:1px solid #dde;padding-bottom:4px}.meta{color:#5b6570}
table{border-collapse:collapse;margin:6px 0 12px;width:100%}
th,td{border:1px solid #dfe3e8;padding:4px 7px;text-align:left;vertical-align:top}th{background:#f3f5f7}
.state{display:inline-block;padding:4px 12px;border-radius:12px;font-weight:700;color:#fff;background:#d9822b}
.state.claimed{background:#1e8e3e}.state.deadline-passed{background:#c5221f}
"""


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "unknown"
    minutes = int(round(seconds / 60))
    h, m = divmod(minutes, 60)
    return f"{h} h {m} min" if h else f"{m} min"


def _q(value: Any, unit: Any) -> str:
    if value is None:
        return ""
    return f"{value} {unit}".strip() if unit else str(value)


# ---------------------------------------------------------------- from the store

RUNS_AROUND = 3                                   # runs shown just before and just after
PATH_SEARCH = dt.timedelta(hours=6)               # how far from the outage a path trace may be
PATH_RUNS_MAX = 200                               # raw documents read at most looking for one
LOOKBACK = dt.timedelta(days=2)                   # history read before the outage's start


class UnknownOutage(LookupError):
    """No outage with that id in the history; ``known`` lists the ids there are."""

    def __init__(self, outage_id: str, known: list[str]) -> None:
        super().__init__(outage_id)
        self.outage_id, self.known = outage_id, known


def parse_outage_id(outage_id: str) -> tuple[str, dt.datetime]:
    """(circuit, start minute) of an id written by :func:`harness.history.outage_id`."""
    circuit, sep, stamp = outage_id.rpartition("-")
    try:
        start = dt.datetime.strptime(stamp, "%Y%m%dT%H%MZ").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"outage id {outage_id!r}: expected CIRCUIT-YYYYMMDDTHHMMZ, "
                         "as `cutover report` lists them") from None
    if not sep or not circuit:
        raise ValueError(f"outage id {outage_id!r}: expected CIRCUIT-YYYYMMDDTHHMMZ")
    return circuit, start


def _check_row(at: dt.datetime, c) -> dict:
    return {"at": iso(at), "id": c.id, "status": c.status, "measured": c.measured, "required": c.required,
            "unit": c.unit, "margin": c.margin, "reason": c.reason, "cause": c.cause}


def build(store, profile, outage_id: str, now: dt.datetime) -> ClaimPack:
    """The claim pack of one outage, read from the store: raises ValueError for
    a malformed id, KeyError for a circuit not in the profile, :class:`UnknownOutage`."""
    from harness import history, tickets
    from harness.verdicts import NETWORK, cause_of
    circuit_name, start = parse_outage_id(outage_id)
    circuit = profile.circuit(circuit_name)
    hours = profile.cutover.sla_claim_hours
    runs = history.load_runs(store, profile.site, since=start - LOOKBACK, until=now)
    found = {o.id: o for o in history.outages(runs, circuit.name, hours, now)}
    outage = found.get(outage_id)
    if outage is None:
        raise UnknownOutage(outage_id, sorted(found))
    seq = [(r, rec) for r, rec in history.circuit_runs(runs, circuit.name)]
    first = next(i for i, (r, _) in enumerate(seq) if r.started_at == outage.start)
    before = [{"at": iso(r.started_at), "run_id": r.id, "verdict": rec.verdict}
              for r, rec in seq[max(0, first - RUNS_AROUND):first]]
    after: list[dict] = []
    if outage.end is not None:
        last = next(i for i, (r, _) in enumerate(seq) if r.started_at == outage.end)
        after = [{"at": iso(r.started_at), "run_id": r.id, "verdict": rec.verdict}
                 for r, rec in seq[last:last + RUNS_AROUND]]
    evidence: list[dict] = []
    opened = store.run(outage.opened_by_run) if outage.opened_by_run is not None else None
    if opened is not None and circuit.name in opened.circuits:
        evidence = [_check_row(opened.started_at, c) for c in opened.circuits[circuit.name].checks
                    if c.status in ("fail", "error") and cause_of(c) == NETWORK]
    path = None
    end = outage.end or now
    every = history.circuit_runs(runs, circuit.name, full_only=False)
    near = sorted((r for r, _ in every if outage.start - PATH_SEARCH <= r.started_at <= end + PATH_SEARCH),
                  key=lambda r: abs((r.started_at - outage.start).total_seconds()))
    for r in near[:PATH_RUNS_MAX]:
        raw = store.raw(r.id, circuit.name).get("path")
        if raw:
            path = {"run_id": r.id, "at": iso(r.started_at), **raw}
            break
    terms = circuit.contract
    clause = {"sla_claim_hours": hours, "availability_pct": terms.availability_pct,
              "response_hours": dict(terms.response_hours), "resolve_hours": dict(terms.resolve_hours)}
    filed = store.claims(profile.site).get(outage_id)
    linked = [j for j in tickets.judged(store, profile, now, circuit.name) if j.ticket.outage_id == outage_id]
    notes = []
    if outage.ongoing:
        notes.append("The outage is still going on: the claim deadline runs from its end.")
    if filed is not None:
        notes.append(f"Claim filed {iso(filed.filed_at)} by {filed.by}" + (f": {filed.note}" if filed.note else ""))
    return ClaimPack(site=profile.site, circuit=circuit.name, provider=circuit.provider, role=circuit.role,
                     outage=outage.to_dict(), evidence=evidence, runs_before=before, runs_after=after,
                     path=path, clause=clause, claim_by=outage.claim_by,
                     state=claim_state(outage.claim_by, filed.filed_at if filed else None, now),
                     ticket=linked[0].to_dict() if linked else None, generated_at=now, notes=notes)
