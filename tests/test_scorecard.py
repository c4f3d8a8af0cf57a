"""The report's provider scorecard on a fixture history with planted outages,
a planted gap in measurement and planted tickets and claims, against a hand
computation written out below."""

from __future__ import annotations

import datetime as dt

import pytest

from harness.profile import load_profile
from harness.reports import build_report
from harness.reports import html as html_report
from harness.reports import markdown as md_report
from harness.store import Store
from tests.fixtures.history import FIXED_END, Planted, generate

UTC = dt.timezone.utc
H = dt.timedelta(hours=1)
M = dt.timedelta(minutes=1)

# 2 days of runs every 15 min ending FIXED_END (2026-11-20 12:00); run i at 2026-11-18 12:15 + i * 15 min.
#   new: runs 100..103 fail  -> outage 2026-11-19 13:15 .. 14:15 (1 h)
#   old: runs 120..127 down  -> outage 2026-11-19 18:15 .. 20:15 (2 h)
#   runs 160..171 not written (04:15 .. 07:00 on 11-20): the hours 05:00 and 06:00 hold no evidence (2 h gap;
#   04:00 has the 04:00 run, 07:00 the 07:15 one)
# Window: SINCE 2026-11-19 00:00 to NOW 2026-11-20 12:15 = 36 h 15 min = 130 500 s
# (the 12:00 hour holds the 12:00 run and counts up to NOW: 15 min).
#   new: down 3 600, gap 7 200, up 130 500 - 10 800 = 119 700 -> 119 700 / 123 300 = 97.080 %
#   old: down 7 200, gap 7 200, up 116 100                   -> 116 100 / 123 300 = 94.161 %
#   measured share, both: 123 300 / 130 500 = 94.5 %
# Claims (sla_claim_hours 12): new's deadline 11-20 02:15, filed 01:00 -> filed;
#   old's deadline 11-20 08:15 passed unfiled at NOW -> missed.
SINCE = dt.datetime(2026, 11, 19, 0, 0, tzinfo=UTC)
NOW = dt.datetime(2026, 11, 20, 12, 15, tzinfo=UTC)
CONTRACTS = {
    "old": "    contract: {availability_pct: 99.5, response_hours: {P1: 1}, resolve_hours: {P1: 4}}\n",
    "new": "    contract: {availability_pct: 99.9, response_hours: {P2: 4, P3: 24}, "
           "resolve_hours: {P2: 8, P3: 72}}\n",
}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    fx = generate(tmp_path_factory.mktemp("score"), end=FIXED_END, days=2, interval_min=15,
                  circuits=("old", "new"), claim_hours=12, round_values=True,
                  outages=(Planted("new", 100, 4, "fail"), Planted("old", 120, 8, "unreachable")),
                  skip_runs=frozenset(range(160, 172)))
    lines = fx.profile_path.read_text().splitlines(keepends=True)
    out, current = [], None
    for line in lines:
        if line.startswith("  - name: "):
            current = line.split(":", 1)[1].strip()
        out.append(line)
        if line.startswith("    reflector:") and current in CONTRACTS:
            out.append(CONTRACTS[current])
    fx.profile_path.write_text("".join(out))
    profile = load_profile(fx.profile_path)
    st = Store(fx.db_path)
    site = profile.site
    d19 = dt.datetime(2026, 11, 19, tzinfo=UTC)
    # new, P2: answered after 3 h 59 min (kept), resolved after 5 h 40 min (kept), verified at
    # resolution and held: every run of the next 4 h passed
    t = st.open_ticket(site, "new", "NW-1", "P2", by="ann", at=d19 + 13 * H + 20 * M, outage_id="new-20261119T1315Z")
    st.update_ticket(site, t.id, "responded", by="ann", at=t.opened_at + 3 * H + 59 * M)
    st.update_ticket(site, t.id, "resolved", by="ann", at=t.opened_at + 5 * H + 40 * M, verify_passed=True,
                     verify_run_id=None)
    # new, P3: "fixed" at 11:00 on 11-19, passing at resolution, but the 13:15 run (the planted outage)
    # falls inside the next 4 h: the fix did not hold
    z = st.open_ticket(site, "new", "NW-0", "P3", by="ann", at=d19 + 8 * H)
    st.update_ticket(site, z.id, "responded", by="ann", at=d19 + 9 * H)
    st.update_ticket(site, z.id, "resolved", by="ann", at=d19 + 11 * H, verify_passed=True, verify_run_id=None)
    # new, P3: opened 4 h 15 min before NOW, no answer yet: within 24 h
    st.open_ticket(site, "new", "NW-2", "P3", by="ann", at=NOW - 4 * H - 15 * M)
    # old, P1: answered after 1 h 30 min (breach), resolved after 1 h 50 min (kept), verification failed
    o = st.open_ticket(site, "old", "OLD-7", "P1", by="ann", at=d19 + 18 * H + 20 * M)
    st.update_ticket(site, o.id, "responded", by="ann", at=o.opened_at + 90 * M)
    st.update_ticket(site, o.id, "resolved", by="ann", at=o.opened_at + 110 * M, verify_passed=False,
                     verify_run_id=None)
    st.file_claim(site, "new-20261119T1315Z", by="ann", at=dt.datetime(2026, 11, 20, 1, 0, tzinfo=UTC))
    rep = build_report(profile, st, since=SINCE, now=NOW)
    yield rep
    st.close()


def card(rep, name):
    return next(c for c in rep.to_dict()["scorecard"] if c["circuit"] == name)


def test_availability_from_covered_time(report):
    new, old = card(report, "new"), card(report, "old")
    assert (new["up_s"], new["down_s"], new["gap_s"]) == (119_700, 3_600, 7_200)
    assert (old["up_s"], old["down_s"], old["gap_s"]) == (116_100, 7_200, 7_200)
    assert new["availability_pct"] == pytest.approx(100 * 119_700 / 123_300, abs=0.001) == 97.080
    assert old["availability_pct"] == pytest.approx(100 * 116_100 / 123_300, abs=0.001) == 94.161
    assert new["measured_pct"] == old["measured_pct"] == 94.5
    assert (new["contracted_pct"], new["meets_availability"]) == (99.9, False)
    assert (old["contracted_pct"], old["meets_availability"]) == (99.5, False)


def test_outages_mttr_tickets_fixes_claims(report):
    new, old = card(report, "new"), card(report, "old")
    assert (new["outages"], new["outage_s"], new["mttr_s"]) == (1, 3_600, 3_600)
    assert (old["outages"], old["outage_s"], old["mttr_s"]) == (1, 7_200, 7_200)
    assert new["tickets"]["P2"] == {"severity": "P2", "tickets": 1, "mean_response_s": 239 * 60,
                                    "mean_resolve_s": 340 * 60, "response_breaches": 0, "resolution_breaches": 0}
    assert new["tickets"]["P3"] == {"severity": "P3", "tickets": 2, "mean_response_s": 3600,
                                    "mean_resolve_s": 3 * 3600, "response_breaches": 0, "resolution_breaches": 0}
    assert new["breaches"] == []
    assert old["tickets"]["P1"]["response_breaches"] == 1 and old["tickets"]["P1"]["mean_resolve_s"] == 110 * 60
    assert [b["reason"] for b in old["breaches"]] == ["P1 ticket OLD-7: first response after 1 h 30 min, contract 1 h"]
    assert new["fixes"] == {"verified": 1, "failed": 1, "unverified": 0, "not_held": [
        "P3 ticket NW-0: the fix did not hold: the run at 2026-11-19 13:15 UTC failed"]}
    assert old["fixes"] == {"verified": 0, "failed": 1, "unverified": 0, "not_held": [
        "P1 ticket OLD-7: verification failed: the check run at resolution did not pass"]}
    assert new["claims"] == {"filed": 1, "missed": 0} and old["claims"] == {"filed": 0, "missed": 1}


def test_rendered_side_by_side(report):
    md = md_report.render(report)
    section = md[md.index("## Provider scorecard"):]
    assert "| Availability (measured time) | 94.161 % (BELOW contract) | 97.080 % (BELOW contract) |" in section
    assert "| Claims filed / missed | 0 / 1 | 1 / 0 |" in section
    assert "old: P1 ticket OLD-7: first response after 1 h 30 min, contract 1 h" in section
    page = html_report.render(report)
    assert '<h2 id="scorecard">Provider scorecard</h2>' in page and "97.080 %" in page


def test_outages_with_claim_state_most_urgent_first(report):
    rows = report.to_dict()["claims"]
    assert [(r["outage_id"], r["state"], r["claim_by"], r["ticket"]) for r in rows] == [
        ("old-20261119T1815Z", "deadline passed", "2026-11-20T08:15:00Z", None),     # 20:15 + 12 h, unfiled
        ("new-20261119T1315Z", "claimed", "2026-11-20T02:15:00Z", "P2 NW-1"),
    ]
    assert rows[1]["filed_at"] == "2026-11-20T01:00:00Z" and rows[0]["duration_s"] == 7200
    md = md_report.render(report)
    assert ("| old-20261119T1815Z | Carrier A (EFM) | 2026-11-19T18:15:00Z | 2 h | 2026-11-20T08:15:00Z | "
            "deadline passed | - |") in md
