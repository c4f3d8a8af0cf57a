"""The provider scorecard of the report: per circuit and provider over the
window, what the line and the service around it delivered against the
contract, old and new side by side (docs/provider.md).

Availability is judged from covered time, never from the number of runs: an
hour of the report window with evidence (a run that passed, failed or found
the circuit down: :func:`harness.history.coverage`) counts as up except where
an outage (:func:`harness.history.outages`, first failing run to the first
passing one) makes it down; an hour without evidence is a gap of ours, left
out of the figure and shown as the measured share beside it. Tickets are
judged by :mod:`harness.tickets` (the contract's classes, post-fix
verification), claims by the store's filings against each outage's deadline.
The figures come from :func:`harness.contract.scorecard`; this module gathers
the inputs (:func:`build`) and renders them (:func:`markdown_section`,
:func:`html_section`); the JSON is ``report.json``'s ``scorecard``.
"""

from __future__ import annotations

import datetime as dt
from html import escape

from harness import contract, history, tickets
from harness.escape import markdown_text

ONE_HOUR = dt.timedelta(hours=1)


def spans(ch, until: dt.datetime) -> list[contract.Span]:
    """Up for every hour with evidence, down for every outage, from a
    :class:`harness.history.CircuitHistory` (the rest is a gap)."""
    out = [contract.Span(t, t + ONE_HOUR, contract.UP) for t, s in (ch.coverage.slots if ch.coverage else [])
           if s != "none"]
    out += [contract.Span(o.start, o.end or until, contract.DOWN) for o in ch.outages]
    return out


def build(profile, store, analysis, since: dt.datetime, now: dt.datetime) -> list[contract.Scorecard]:
    """One scorecard per circuit of the analysis, in its order (old, new, backup)."""
    filed = store.claims(profile.site)
    judged = tickets.judged(store, profile, now)
    cards = []
    for name, ch in analysis.circuits.items():
        terms, _hours = tickets.terms_of(profile, name)
        mine = [j.ticket for j in judged if j.ticket.circuit == name and j.ticket.opened_at < now
                and (j.ticket.opened_at >= since or j.ticket.closed_at is None or j.ticket.closed_at >= since)]
        claims_filed = claims_missed = 0
        for o in ch.outages:
            f = filed.get(o.id)
            if f is not None and (o.claim_by is None or f.filed_at <= o.claim_by):
                claims_filed += 1
            elif o.claim_by is not None and o.claim_by < now:
                claims_missed += 1
        cards.append(contract.scorecard(
            circuit=name, provider=ch.provider, role=ch.role, terms=terms, spans=spans(ch, now),
            outage_durations_s=[(o.duration_s, not o.ongoing) for o in ch.outages], tickets=mine,
            claims_filed=claims_filed, claims_missed=claims_missed, since=since, until=now, now=now))
    return cards


_URGENCY = {"ongoing": 0, "open": 1, "deadline passed": 2, "claimed": 3}


def claim_rows(profile, store, analysis, now: dt.datetime) -> list[dict]:
    """Every outage of the window with its claim state, most urgent first:
    ongoing, then open claims by deadline, then missed ones, then claimed."""
    from harness.claims import claim_state
    filed = store.claims(profile.site)
    linked: dict[str, str] = {}
    for t in store.tickets(profile.site):
        if t.outage_id:
            linked.setdefault(t.outage_id, f"{t.severity} {t.ref}")
    rows = []
    for o in analysis.all_outages():
        f = filed.get(o.id)
        state = claim_state(o.claim_by, f.filed_at if f else None, now)
        shown = "ongoing" if o.ongoing and state == "open" else state
        rows.append({"outage_id": o.id, "circuit": o.circuit, "provider": analysis.circuits[o.circuit].provider,
                     "start": history.iso(o.start), "end": history.iso(o.end), "duration_s": round(o.duration_s),
                     "claim_by": history.iso(o.claim_by), "state": state, "ongoing": o.ongoing,
                     "filed_at": history.iso(f.filed_at) if f else None, "ticket": linked.get(o.id)})
        rows[-1]["_rank"] = (_URGENCY[shown], o.claim_by or now, o.start)
    rows.sort(key=lambda r: r["_rank"])
    for r in rows:
        del r["_rank"]
    return rows


def _pct(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f} %"


def _dur(seconds: float | None) -> str:
    return "-" if seconds is None else contract.fmt_duration(seconds)


def rows(report) -> tuple[list[str], list[list[str]], list[str]]:
    """(header, rows, breach sentences): the report's scorecard as a table, one column per circuit."""
    return table(list(getattr(report, "scorecard", []) or []))


def table(cards: list[contract.Scorecard]) -> tuple[list[str], list[list[str]], list[str]]:
    """(header, rows, breach sentences) of scorecards (the report's and the board's)."""
    head = ["", *(f"{c.circuit} ({c.role}): {c.provider or 'provider not named'}" for c in cards)]

    def line(label, f):
        return [label, *(f(c) for c in cards)]

    def verdict(c):
        ok = c.meets_availability
        return "" if ok is None else (" (meets)" if ok else " (BELOW contract)")

    def tickets_text(c):
        parts = []
        for sev, cf in sorted(c.classes.items()):
            d = cf.to_dict()
            parts.append(f"{sev}: {cf.tickets}, response {_dur(d['mean_response_s'])}, "
                         f"resolution {_dur(d['mean_resolve_s'])}")
        return "; ".join(parts) or "none"

    out = [
        line("Availability (measured time)", lambda c: _pct(c.availability.pct) + verdict(c)),
        line("Contracted availability", lambda c: _pct(c.contracted_pct, 2) if c.contracted_pct else "-"),
        line("Measured share of the window", lambda c: _pct(c.availability.measured_pct, 1)),
        line("Outages (total down time)", lambda c: f"{c.outages} ({_dur(c.outage_s)})"),
        line("Mean time to restore", lambda c: _dur(c.mttr_s)),
        line("Tickets by class (mean times)", tickets_text),
        line("Response / resolution breaches",
             lambda c: f"{sum(x.response_breaches for x in c.classes.values())} / "
                       f"{sum(x.resolution_breaches for x in c.classes.values())}"),
        line("Fixes verified / not held / not verified",
             lambda c: f"{c.fixes_verified} / {c.fixes_failed} / {c.fixes_unverified}"),
        line("Claims filed / missed", lambda c: f"{c.claims_filed} / {c.claims_missed}"),
    ]
    breaches = [f"{c.circuit}: {b.sentence}" for c in cards for b in c.breaches]
    breaches += [f"{c.circuit}: fix not verified: {n}" for c in cards for n in c.not_held]
    return head, out, breaches


CLAIM_HEAD = ["Outage", "Provider", "Start", "Duration", "Claim by", "State", "Ticket"]


def _claim_table(report) -> list[list[str]]:
    return [[r["outage_id"], r["provider"] or "-", r["start"], _dur(r["duration_s"]),
             r["claim_by"] or "when it ends", ("ongoing, " if r["ongoing"] else "") + r["state"],
             r["ticket"] or "-"] for r in getattr(report, "claims", []) or []]


INTRO = ("Availability counts covered time only: hours without evidence are left out (shown as the "
         "measured share), never counted as up.")


def markdown_section(report) -> str:
    head, body, breaches = rows(report)
    if len(head) < 2:
        return ""
    md = lambda s: markdown_text(str(s))  # noqa: E731
    L = ["## Provider scorecard", "", INTRO, "",
         "| " + " | ".join(md(h) for h in head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    L += ["| " + " | ".join(md(c) for c in r) + " |" for r in body]
    if breaches:
        L += ["", "Breaches and fixes that did not hold:", ""] + [f"- {md(b)}" for b in breaches]
    claims = _claim_table(report)
    if claims:
        L += ["", "### Outages and SLA claims (most urgent first)", "",
              "| " + " | ".join(CLAIM_HEAD) + " |", "|" + "|".join("---" for _ in CLAIM_HEAD) + "|"]
        L += ["| " + " | ".join(md(c) for c in r) + " |" for r in claims]
    return "\n".join(L) + "\n"


def html_section(report) -> str:
    head, body, breaches = rows(report)
    if len(head) < 2:
        return ""
    e = escape
    table = ("<table><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr></thead><tbody>"
             + "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in body)
             + "</tbody></table>")
    out = f'<h2 id="scorecard">Provider scorecard</h2><p class="meta">{e(INTRO)}</p>{table}'
    if breaches:
        out += ('<p>Breaches and fixes that did not hold:</p><ul class="blocking">'
                + "".join(f"<li>{e(b)}</li>" for b in breaches) + "</ul>")
    claims = _claim_table(report)
    if claims:
        out += ('<h3 id="claims">Outages and SLA claims (most urgent first)</h3><table><thead><tr>'
                + "".join(f"<th>{e(h)}</th>" for h in CLAIM_HEAD) + "</tr></thead><tbody>"
                + "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in claims)
                + "</tbody></table>")
    return out
