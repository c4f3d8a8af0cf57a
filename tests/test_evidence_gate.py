"""The gate counts only measured time (issue #13, "Gate on evidence"), and
cause classes decide what may become an outage.

Histories are written through the real store, run by run; every expected
figure below is computed by hand from the plan written in the test.
Coverage rule (docs/judgement.md): a UTC day counts toward
``min_parallel_days`` when at least 18 of its 24 hours hold a full run.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from harness import gate, history
from harness.profile import load_profile
from harness.store import Store
from harness.verdicts import GAP, INTERNAL, NETWORK, Check
from tests.fixtures.history import write_profile

UTC = dt.timezone.utc
END = dt.datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
NOW = END + dt.timedelta(minutes=1)
Q = dt.timedelta(minutes=15)
D = dt.date
RULE = "a day counts when at least 18 of its 24 hours hold a full run"

PASS = ("GO", [Check("stream.mos", "pass", 4.3, 4.0, "", 0.3, "MOS 4.3 >= 4 minimum")])
LOSS = ("NO-GO", [Check("stream.loss_up", "fail", 5.0, 1.0, "%", -4.0, "upstream loss 5 % > 1 % limit", NETWORK)])
DOWN = ("NO-GO", [Check("stream.measured", "error", None, None, "", None,
                        "stream: reflector 192.0.2.1:862 does not answer", NETWORK)])
KEY = ("NO-GO", [Check("stream.measured", "error", None, None, "", None,
                       "stream could not measure: key_file missing", GAP)])
BUG = ("NO-GO", [Check("stream.measured", "error", None, None, "", None,
                       "internal error in cutover (stream): TypeError", INTERNAL)])


def write(folder, start: dt.date, plan, *, kind_of=lambda t: "check"):
    """plan: [(time, {circuit: (verdict, checks)})] -> (profile, store)."""
    profile = load_profile(write_profile(folder, start))
    store = Store(folder / "history.sqlite")
    with store.batch():
        for t, per in plan:
            rid = store.begin_run(profile.site, {}, "t", started_at=t, kind=kind_of(t))
            for name, (verdict, checks) in per.items():
                store.add_circuit_result(rid, name, verdict, checks)
            rid = store.finish_run(rid, "GO", finished_at=t + dt.timedelta(seconds=30))
    return profile, store


def test_one_run_in_twenty_days_is_no_go_naming_coverage(tmp_path):
    start = (NOW - dt.timedelta(days=20)).date()             # 2026-10-31
    profile, store = write(tmp_path, start, [(END - dt.timedelta(hours=1), {"new": PASS, "old": PASS})])
    d = gate.decide(profile, store, now=NOW)
    assert d.decision == "NO-GO"
    # one run fills one hour: no day reaches 18 measured hours
    assert d.blocking[0] == f"measured 0 of 14 required days on new (parallel run at day 20; {RULE})"
    pr = d.pass_rates["new"]
    # the window 10-31 00:00 .. 11-20 12:00 holds 20 x 24 + 12 = 492 whole hours (+ the hour in progress,
    # empty, not counted): 1 measured, 491 without evidence
    assert (pr["measured_hours"], pr["passed_hours"]) == (1, 1)
    assert pr["uncovered_pct"] == pytest.approx(100 * 491 / 492)
    cov = next(i for i in d.items if i.id == "coverage:new")
    assert "no measurements 2026-10-31 00:00 to 2026-11-20 11:00 UTC" in cov.detail
    # not proven: 14 covered days still missing, projected from today
    assert d.proven_on == D(2026, 11, 20) + dt.timedelta(days=14)
    # the same through `cutover gate` (the table and the JSON)
    store.close()
    from tests.conftest import run_cli
    args = ("gate", str(tmp_path / "site.yaml"), "--db", str(tmp_path / "history.sqlite"), "--as-of",
            "2026-11-20T12:01Z")
    r = run_cli(*args)
    assert r.returncode == 1
    assert "parallel run   measured 0 of 14 days, day 20 since 2026-10-31 (complete on 2026-12-04 at the " \
           "earliest)" in r.stdout
    assert "no measurements 2026-10-31 00:00 to 2026-11-20 11:00 UTC" in r.stdout
    j = run_cli(*args, "--json")
    assert json.loads(j.stdout)["covered_days"] == 0


def _quarter_hours(first: dt.datetime, last: dt.datetime, skip=None):
    t = first
    while t <= last:
        if not (skip and skip[0] <= t < skip[1]):
            yield t
        t += Q


def test_three_day_hole_is_named_and_the_covered_days_decide(tmp_path):
    hole = (dt.datetime(2026, 11, 12, 2, 0, tzinfo=UTC), dt.datetime(2026, 11, 15, 2, 0, tzinfo=UTC))
    plan = [(t, {"new": PASS, "old": PASS})
            for t in _quarter_hours(dt.datetime(2026, 11, 1, tzinfo=UTC), END, hole)]
    profile, store = write(tmp_path, D(2026, 11, 1), plan)
    for item in ("voice-vlan", "failover", "porting"):
        store.signoff(profile.site, item, "A. Engineer", at=dt.datetime(2026, 11, 19, tzinfo=UTC))
    d = gate.decide(profile, store, now=NOW)
    # days 11-01 .. 11-19 are whole; 11-12 keeps 2 hours, 11-13 and 11-14 none, 11-15 keeps 22:
    # covered = 19 - 3 = 16 >= 14, so the hole does not block (rule: covered days, not calendar days)
    assert d.covered_days == 16
    assert d.decision == "GO", d.blocking
    cov = d.coverage["new"]
    assert [(h.start, h.end) for h in cov.holes] == [hole]
    item = next(i for i in d.items if i.id == "coverage:new")
    assert "no measurements 2026-11-12 02:00 to 2026-11-15 02:00 UTC" in item.detail
    # 14th covered day: 11 days 11-01..11-11, then 11-15, 11-16, 11-17 -> complete (proven) on 11-18
    assert d.proven_on == D(2026, 11, 18) == d.parallel_complete_on
    # measured hours: 19 x 24 + 13 (11-20 00:00..12:00) - 72 (hole) = 397; uncovered 72 of 469
    pr = d.pass_rates["new"]
    assert (pr["measured_hours"], pr["passed_hours"]) == (397, 397)
    assert pr["uncovered_pct"] == pytest.approx(100 * 72 / 469)


def test_a_longer_hole_blocks_with_the_covered_count(tmp_path):
    hole = (dt.datetime(2026, 11, 8, 0, 0, tzinfo=UTC), dt.datetime(2026, 11, 14, 0, 0, tzinfo=UTC))
    plan = [(t, {"new": PASS}) for t in _quarter_hours(dt.datetime(2026, 11, 1, tzinfo=UTC), END, hole)]
    profile, store = write(tmp_path, D(2026, 11, 1), plan)
    d = gate.decide(profile, store, now=NOW)
    # 19 whole days minus 6 missing = 13 covered < 14: blocks, although the calendar says day 19
    assert d.blocking[0] == f"measured 13 of 14 required days on new (parallel run at day 19; {RULE})"


def test_partial_runs_are_evidence_for_their_steps_only(tmp_path):
    """`check --step latency` runs: not runs of the circuit (pass rate, coverage),
    but they update the latest result of their own checks."""
    full = ("GO", [Check("latency.rtt", "pass", 10.0, 300.0, "ms", 290.0, "RTT ok"),
                   Check("stream.mos", "pass", 4.3, 4.0, "", 0.3, "MOS ok"),
                   Check("capacity.calls", "pass", 40, 20, "calls", 20, "capacity ok")])
    part = ("GO", [Check("latency.rtt", "pass", 12.0, 300.0, "ms", 288.0, "RTT ok (newer)")])
    t0 = END - dt.timedelta(hours=3)
    plan = [(t0, {"new": full}), (t0 + dt.timedelta(hours=1), {"new": part}),
            (t0 + dt.timedelta(hours=2), {"new": part})]
    profile, store = write(tmp_path, D(2026, 11, 19), plan,
                           kind_of=lambda t: "check" if t == t0 else history.PARTIAL_KIND)
    a = history.analyze(history.load_runs(store, profile.site), profile, now=NOW)
    ch = a.circuits["new"]
    assert (ch.runs, ch.passed) == (1, 1)                    # one full run, not 3 of 3
    latest = {c.id: c for c in ch.latest_checks}
    assert set(latest) == {"latency.rtt", "stream.mos", "capacity.calls"}   # nothing vanishes
    assert latest["latency.rtt"].measured == 12.0            # the latest result of that check
    assert ch.coverage.measured == 1
    # the Prometheus output keeps every check too (the latest run is partial)
    from harness.exporter import render
    prom = render(profile, store, now=NOW, with_gate=False)
    for cid in ("latency.rtt", "stream.mos", "capacity.calls"):
        assert f'check="{cid}"' in prom, cid
    # and so does the JUnit file: MOS and capacity do not vanish after `--step latency`
    import xml.etree.ElementTree as ET
    from harness.reports import write_reports
    write_reports(profile, store, tmp_path / "rep", now=NOW)
    names = [c.get("name") for c in ET.parse(tmp_path / "rep" / "junit.xml").getroot().iter("testcase")]
    assert sorted(names) == ["capacity.calls", "latency.rtt", "stream.mos"]
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "(1/1)" in md and "(3/3)" not in md            # one full run, not three


def _outage_plan(bad):
    t0 = dt.datetime(2026, 11, 19, 0, 0, tzinfo=UTC)
    states = [PASS, bad, bad, PASS]
    return [(t0 + i * Q, {"new": s}) for i, s in enumerate(states)]


@pytest.mark.parametrize("bad, outage", [(LOSS, "failed"), (DOWN, "unreachable"), (KEY, None), (BUG, None)])
def test_only_network_causes_open_outages(tmp_path, bad, outage):
    profile, store = write(tmp_path, D(2026, 11, 19), _outage_plan(bad))
    a = history.analyze(store.runs(profile.site), profile, now=NOW)
    ch = a.circuits["new"]
    if outage is None:
        assert ch.outages == []
        assert (ch.runs, ch.passed, ch.gaps) == (2, 2, 2)      # gaps are neither passes nor failures
        assert history.pass_rate(store.runs(profile.site), "new") == (2, 2)
    else:
        (o,) = ch.outages
        t0 = dt.datetime(2026, 11, 19, 0, 0, tzinfo=UTC)
        assert (o.kind, o.start, o.end, o.runs) == (outage, t0 + Q, t0 + 3 * Q, 2)
        assert o.claim_by == t0 + 3 * Q + dt.timedelta(hours=24)
        # the outage records the evidence that opened it
        first_bad = store.runs(profile.site)[1]
        assert o.opened_by_run == first_bad.id
        assert o.evidence == [f"{bad[1][0].id}: {bad[1][0].reason}"]
        assert o.to_dict()["opened_by"] == {"run_id": first_bad.id, "checks": o.evidence}


def test_our_gaps_are_not_failing_runs_of_the_carrier(tmp_path):
    """Hourly passes for 20 days, then three runs in which our key file was
    broken and one in which a bug stopped a step: the last 24 h still hold 20
    measured runs, all passed, so no-failure-24h holds; the gaps are no evidence."""
    hours = [dt.datetime(2026, 11, 1, tzinfo=UTC) + i * dt.timedelta(hours=1) for i in range(19 * 24 + 13)]
    plan = [(t, {"new": PASS}) for t in hours[:-4]] + [(t, {"new": s}) for t, s in
                                                        zip(hours[-4:], (KEY, KEY, KEY, BUG))]
    profile, store = write(tmp_path, D(2026, 11, 1), plan)
    d = gate.decide(profile, store, now=NOW)
    item = next(i for i in d.items if i.id == "no-failure-24h:new")
    assert item.status == "ok" and item.detail == "20 run(s) of new in the last 24 h, all passed"
    cov = d.coverage["new"]
    # 09:00, 10:00, 11:00 hold only gaps; the hour in progress (12:00) is not counted until it has evidence
    assert cov.count("none") == 3 and cov.holes[-1].start == hours[-4] and cov.holes[-1].end == NOW
    assert d.pass_rates["new"]["measured_hours"] == len(hours) - 4
