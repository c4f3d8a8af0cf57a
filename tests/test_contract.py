"""The provider's contract judged (harness/contract.py): response/resolution
breaches at the boundary per class, availability from measured time only, and
the scorecard, each against figures worked out by hand."""

import datetime as dt

import pytest

from harness.contract import (DOWN, GAP, UP, Span, Terms, Ticket, availability, fmt_duration,
                              resolution_breach, response_breach, scorecard)

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
TERMS = Terms(availability_pct=99.9, response_hours={"P1": 1, "P2": 4, "P3": 24},
              resolve_hours={"P1": 4, "P2": 8, "P3": 72})


def ticket(sev, *, responded_after=None, resolved_after=None, ref="NW-4411"):
    return Ticket(id=1, ref=ref, circuit="fibre", severity=sev, opened_at=T0,
                  responded_at=None if responded_after is None else T0 + responded_after,
                  resolved_at=None if resolved_after is None else T0 + resolved_after)


@pytest.mark.parametrize("sev,hours", [("P1", 1), ("P2", 4), ("P3", 24)])
def test_response_boundary_per_class(sev, hours):
    h = dt.timedelta(hours=hours)
    minute = dt.timedelta(minutes=1)
    now = T0 + dt.timedelta(days=10)
    assert response_breach(ticket(sev, responded_after=h - minute), TERMS, now) is None
    assert response_breach(ticket(sev, responded_after=h), TERMS, now) is None     # exactly on time
    b = response_breach(ticket(sev, responded_after=h + minute), TERMS, now)
    assert b is not None and b.kind == "response" and not b.waiting
    assert b.took_s == hours * 3600 + 60


def test_breach_sentence_names_ticket_time_and_contract():
    b = response_breach(ticket("P2", responded_after=dt.timedelta(hours=6, minutes=12)), TERMS,
                        T0 + dt.timedelta(days=1))
    assert b.sentence == "P2 ticket NW-4411: first response after 6 h 12 min, contract 4 h"
    # 3 h 59 min passes, 4 h 01 min is a breach (the example)
    assert response_breach(ticket("P2", responded_after=dt.timedelta(hours=3, minutes=59)), TERMS, T0) is None
    assert response_breach(ticket("P2", responded_after=dt.timedelta(hours=4, minutes=1)), TERMS,
                           T0).sentence.endswith("after 4 h 1 min, contract 4 h")


def test_waiting_ticket_is_judged_against_now():
    t = ticket("P1")
    assert response_breach(t, TERMS, T0 + dt.timedelta(minutes=59)) is None
    b = response_breach(t, TERMS, T0 + dt.timedelta(hours=2))
    assert b.waiting and b.sentence == "P1 ticket NW-4411: no first response after 2 h, contract 1 h"
    r = resolution_breach(t, TERMS, T0 + dt.timedelta(hours=5))
    assert r.kind == "resolution" and r.waiting


def test_unknown_class_is_not_judged():
    assert response_breach(ticket("P9", responded_after=dt.timedelta(days=9)), TERMS, T0) is None


def test_availability_excludes_gaps_hand_computed():
    # 10 days = 240 h. Planted: outage 2 h (day 2), outage 30 min (day 5), and a 24 h gap
    # (probe off, day 7) that overlaps nothing. Runs cover everything else.
    # measured = 240 - 24 = 216 h; down = 2.5 h; up = 213.5 h
    # availability = 213.5 / 216 = 98.8426 %; measured share = 216 / 240 = 90 %
    start, end = T0, T0 + dt.timedelta(days=10)
    h = dt.timedelta(hours=1)
    spans = [Span(start, end, UP),                                   # every run passed ...
             Span(T0 + 26 * h, T0 + 28 * h, DOWN),                   # ... except in the outages
             Span(T0 + 100 * h, T0 + 100.5 * h, DOWN),
             Span(T0 + 150 * h, T0 + 174 * h, GAP)]
    # the gap is where no run exists: model it by removing UP there
    spans[0:1] = [Span(start, T0 + 150 * h, UP), Span(T0 + 174 * h, end, UP)]
    a = availability(spans, start, end)
    assert a.up_s == pytest.approx(213.5 * 3600)
    assert a.down_s == pytest.approx(2.5 * 3600)
    assert a.gap_s == pytest.approx(24 * 3600)
    assert a.pct == pytest.approx(100 * 213.5 / 216)
    assert a.measured_pct == pytest.approx(90.0)
    # counting the gap as up would have claimed 98.96 %: it must not
    assert a.pct != pytest.approx(100 * (240 - 2.5) / 240)


def test_availability_nothing_measured_is_none():
    a = availability([Span(T0, T0 + dt.timedelta(hours=5), GAP)], T0, T0 + dt.timedelta(hours=5))
    assert a.pct is None and a.measured_pct == 0


def test_scorecard_figures():
    h = dt.timedelta(hours=1)
    tickets = [ticket("P1", responded_after=0.5 * h, resolved_after=3 * h, ref="A-1"),
               ticket("P1", responded_after=2 * h, resolved_after=5 * h, ref="A-2"),   # both breached
               ticket("P3", responded_after=1 * h, ref="A-3")]                       # open, within 72 h
    tickets[0].verified, tickets[1].verified = True, False
    tickets[1].verification = "the fix did not hold: the run at 2026-11-20 18:00 UTC failed"
    spans = [Span(T0, T0 + 100 * h, UP), Span(T0 + 10 * h, T0 + 13 * h, DOWN)]
    sc = scorecard(circuit="fibre", provider="NewCo", role="new", terms=TERMS, spans=spans,
                   outage_durations_s=[(3 * 3600, True), (1800, False)], tickets=tickets,
                   claims_filed=1, claims_missed=0, since=T0, until=T0 + 100 * h,
                   now=T0 + 20 * h)
    d = sc.to_dict()
    assert d["availability_pct"] == pytest.approx(97.0)          # 97 of 100 measured hours
    assert d["meets_availability"] is False
    assert d["outages"] == 2 and d["outage_s"] == 3 * 3600 + 1800
    assert d["mttr_s"] == 3 * 3600                                # only the ended outage
    p1 = d["tickets"]["P1"]
    assert p1["tickets"] == 2 and p1["response_breaches"] == 1 and p1["resolution_breaches"] == 1
    assert p1["mean_response_s"] == round((0.5 + 2) / 2 * 3600)
    assert d["fixes"] == {"verified": 1, "failed": 1, "unverified": 0, "not_held": [
        "P1 ticket A-2: the fix did not hold: the run at 2026-11-20 18:00 UTC failed"]}
    assert [b["reason"] for b in d["breaches"]] == [
        "P1 ticket A-2: first response after 2 h, contract 1 h",
        "P1 ticket A-2: resolution after 5 h, contract 4 h"]


def test_fmt_duration():
    assert fmt_duration(6 * 3600 + 12 * 60) == "6 h 12 min"
    assert fmt_duration(45 * 60) == "45 min"
    assert fmt_duration(51 * 3600) == "2 d 3 h"


def test_profile_contract_validated():
    from pydantic import ValidationError

    from harness.profile import Circuit
    c = Circuit(name="fibre", role="new", down_mbps=100, up_mbps=20,
                contract={"availability_pct": 99.9, "response_hours": {"P1": 1, "P2": 4},
                          "resolve_hours": {"P1": 4}})
    assert c.contract.terms().response_hours == {"P1": 1, "P2": 4}
    assert c.contract.classes() == ["P1", "P2"]
    with pytest.raises(ValidationError, match="hours must be > 0"):
        Circuit(name="x", role="new", down_mbps=1, up_mbps=1, contract={"response_hours": {"P1": 0}})
    with pytest.raises(ValidationError):
        Circuit(name="x", role="new", down_mbps=1, up_mbps=1, contract={"availability_pct": 120})
    with pytest.raises(ValidationError):
        Circuit(name="x", role="new", down_mbps=1, up_mbps=1, contract={"uptime": 99})
