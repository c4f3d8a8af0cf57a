"""The termination gate: each blocking condition alone blocks with its reason;
all satisfied gives GO with hand-computed notice and disconnect dates.

Histories: 16 days of hourly runs (384) for old/new/backup, written through
the real store, ending 2026-11-20 12:00 UTC; first run 2026-11-04 13:00, so
the parallel run starts 2026-11-04. Coverage (a day counts with >= 18 of its
24 hours measured): 11-04 holds 11 hours (13:00-23:00) and does not count, so
the 14th covered day is 11-18 and the parallel run is complete on 11-19.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from harness import gate
from harness.profile import load_profile
from harness.store import Store
from tests.conftest import run_cli
from tests.fixtures.history import FIXED_END, Planted, generate

UTC = dt.timezone.utc
NOW = FIXED_END + dt.timedelta(minutes=1)          # 2026-11-20 12:01 UTC
ITEMS = ("voice-vlan", "failover", "porting")
D = dt.date


def make(tmp_path, *, sign=ITEMS, outages=(), **kw):
    fx = generate(tmp_path, days=16, interval_min=60, end=FIXED_END, outages=outages, **kw)
    profile = load_profile(fx.profile_path)
    with Store(fx.db_path) as store:
        for item in sign:
            store.signoff(profile.site, item, "A. Engineer", note=f"{item} done",
                          at=dt.datetime(2026, 11, 19, 9, 0, tzinfo=UTC))
    return fx, profile


def decide(fx, profile, now=NOW):
    with Store(fx.db_path) as store:
        return gate.decide(profile, store, now=now)


def test_fixture_dates(tmp_path):
    fx, profile = make(tmp_path)
    assert fx.start == dt.datetime(2026, 11, 4, 13, 0, tzinfo=UTC) and fx.runs == 384
    assert profile.cutover.parallel_run_start == D(2026, 11, 4)


def test_all_satisfied_is_go_with_hand_computed_dates(tmp_path):
    fx, profile = make(tmp_path)
    d = decide(fx, profile)
    assert d.decision == "GO" and d.blocking == []
    assert {i.id: i.status for i in d.items} == {
        "parallel-run": "ok", "pass-rate:new": "ok", "no-failure-24h:new": "ok", "capacity:new": "ok",
        "coverage:new": "info",
        "checklist:voice-vlan": "ok", "checklist:failover": "ok", "checklist:porting": "ok"}
    # covered days 11-05 .. 11-19 (15); the 14th is 11-18, so proven on 11-19 (from the evidence, not
    # the calendar's 11-18); disconnect = max(11-19 + 30 overlap, today 11-20 + 30 notice) = 12-20;
    # notice_by = 12-20 - 30 = 11-20 (today); the overlap that leaves = 12-20 - 11-19 = 31 days
    assert (d.parallel_days, d.parallel_complete_on, d.proven_on) == (16, D(2026, 11, 19), D(2026, 11, 19))
    assert d.covered_days == 15
    assert (d.disconnect_on, d.notice_by, d.overlap_days) == (D(2026, 12, 20), D(2026, 11, 20), 31)
    # hours 11-04 00:00 .. 11-20 12:00 = 397, of which 13 (11-04 00:00-12:59) without evidence
    assert d.pass_rates["new"] == {"passed": 384, "runs": 384, "pass_pct": 100.0, "passed_hours": 384,
                                   "measured_hours": 384, "uncovered_pct": pytest.approx(100 * 13 / 397)}
    porting = next(i for i in d.items if i.id == "checklist:porting")
    assert (porting.by, porting.note) == ("A. Engineer", "porting done")


def test_long_overlap_moves_the_notice_date(tmp_path):
    fx, profile = make(tmp_path, overlap_days=60)
    d = decide(fx, profile)
    # disconnect = max(11-19 + 60 = 2027-01-18, 11-20 + 30 = 12-20); notice_by = 01-18 - 30 = 12-19
    assert d.decision == "GO"
    assert (d.disconnect_on, d.notice_by, d.overlap_days) == (D(2027, 1, 18), D(2026, 12, 19), 60)
    assert d.days_to_notice == 29


def test_parallel_run_too_short_alone_blocks(tmp_path):
    fx, profile = make(tmp_path, parallel_run_start=D(2026, 11, 15))
    d = decide(fx, profile)
    assert d.decision == "NO-GO"
    assert d.blocking == ["measured 5 of 14 required days on new (parallel run at day 5; a day counts "
                          "when at least 18 of its 24 hours hold a full run)"]
    # covered 11-15 .. 11-19; 9 days missing: proven = today + 9 = 11-29; disconnect = max(12-29, 12-20)
    assert (d.proven_on, d.disconnect_on, d.notice_by) == (D(2026, 11, 29), D(2026, 12, 29), D(2026, 11, 29))


def test_pass_rate_alone_blocks(tmp_path):
    # 30 failing runs of 384 (ending 10 days before NOW): 354/384 = 92.19 % < 95 %
    fx, profile = make(tmp_path, outages=(Planted("new", 100, 30, "fail"),))
    d = decide(fx, profile)
    assert d.blocking == ["circuit new passed 92.2 % of measured hours (354 of 384) < 95 % required; "
                          "3.27 % of 397 hours had no evidence"]
    assert d.pass_rates["new"]["passed"] == 354


def test_failure_in_last_24h_alone_blocks(tmp_path):
    # run 380 = 2026-11-20 09:00, 3 h before the last run; 383/384 still passes the rate
    fx, profile = make(tmp_path, outages=(Planted("new", 380, 1, "fail"),))
    d = decide(fx, profile)
    assert len(d.blocking) == 1
    assert d.blocking[0].startswith("1 failing run(s) of new in the last 24 h, latest 2026-11-20 09:00 UTC: "
                                    "stream.loss_up: upstream loss")


def test_unreachable_in_last_24h_blocks_too(tmp_path):
    fx, profile = make(tmp_path, outages=(Planted("new", 370, 2, "unreachable"),))
    d = decide(fx, profile)
    assert len(d.blocking) == 1 and "2 failing run(s) of new" in d.blocking[0]
    assert "did not answer" in d.blocking[0]


def test_stale_evidence_blocks(tmp_path):
    fx, profile = make(tmp_path)
    d = decide(fx, profile, now=FIXED_END + dt.timedelta(days=2))
    assert d.blocking == ["no run of circuit new in the last 24 h (evidence is stale)"]


def test_capacity_alone_blocks(tmp_path):
    # capacity measured once, at run 100 (2026-11-08 17:00): its failing check is one failing run
    # 11 days ago, so only the capacity condition blocks
    fx, profile = make(tmp_path, capacity={"new": 12}, capacity_at=(100,))
    d = decide(fx, profile)
    assert d.blocking == ["circuit new carried 12 calls < 20 planned (measured 2026-11-08 17:00 UTC)"]


def test_capacity_not_measured_does_not_block(tmp_path):
    fx, profile = make(tmp_path)
    with Store(fx.db_path) as store:
        runs = store.runs(profile.site, checks="failing")
        d = gate.evaluate(profile, runs, store.signoffs(profile.site), NOW, series={})
    cap = next(i for i in d.items if i.id == "capacity:new")
    assert (cap.status, d.decision) == ("info", "GO")


def test_unsigned_item_alone_blocks(tmp_path):
    fx, profile = make(tmp_path, sign=("voice-vlan", "failover"))
    d = decide(fx, profile)
    assert d.blocking == ["checklist item 'porting' (Numbers ported to the new provider) is not signed off"]


def test_revoked_item_blocks(tmp_path):
    fx, profile = make(tmp_path)
    with Store(fx.db_path) as store:
        store.signoff(profile.site, "failover", "B. Checker", note="LTE did not take over",
                      revoke=True, at=dt.datetime(2026, 11, 20, 8, 0, tzinfo=UTC))
    d = decide(fx, profile)
    assert d.blocking == ["checklist item 'failover' (Backup line failover tested): sign-off revoked by "
                          "B. Checker on 2026-11-20"]


def test_no_runs_blocks(tmp_path):
    fx, profile = make(tmp_path)
    d = gate.evaluate(profile, [], {}, NOW)
    assert "no measured hour of circuit new since the parallel run started" in d.blocking
    assert d.blocking[0].startswith("measured 0 of 14 required days on new")
    assert d.decision == "NO-GO"


# ---------------------------------------------------------------- CLI

def test_cli_gate_go_json(tmp_path):
    fx, profile = make(tmp_path)
    r = run_cli("gate", str(fx.profile_path), "--db", str(fx.db_path), "--as-of", "2026-11-20T12:01Z", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert (d["decision"], d["blocking"], d["notice_by"], d["disconnect_on"]) == ("GO", [], "2026-11-20",
                                                                                   "2026-12-20")
    assert d["overlap_days"] == 31 and len(d["items"]) == 8 and d["covered_days"] == 15


def test_cli_gate_no_go_table(tmp_path):
    fx, profile = make(tmp_path, sign=("voice-vlan",))
    r = run_cli("gate", str(fx.profile_path), "--db", str(fx.db_path), "--as-of", "2026-11-20T12:01Z")
    assert r.returncode == 1, r.stderr
    assert "Termination gate for Harbour Street office: NO-GO" in r.stdout
    assert "What blocks termination (2):" in r.stdout
    assert "checklist item 'porting' (Numbers ported to the new provider) is not signed off" in r.stdout
    assert "disconnect on  2026-12-20" in r.stdout


def test_cli_gate_without_history(tmp_path):
    fx, profile = make(tmp_path)
    r = run_cli("gate", str(fx.profile_path), "--db", str(tmp_path / "none.sqlite"), "--json",
                "--as-of", "2026-11-20")
    assert r.returncode == 1
    d = json.loads(r.stdout)
    assert d["decision"] == "NO-GO"
    assert "no measured hour of circuit new since the parallel run started" in d["blocking"]
    assert not (tmp_path / "none.sqlite").exists()          # a read-only command creates nothing


@pytest.mark.parametrize("args,msg", [(["--as-of", "yesterday"], "--as-of 'yesterday'"),
                                      ([], "no such file")])
def test_cli_gate_bad_input(tmp_path, args, msg):
    profile = str(tmp_path / "missing.yaml") if not args else None
    if profile is None:
        fx, _ = make(tmp_path)
        profile = str(fx.profile_path)
    r = run_cli("gate", profile, *args)
    assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr


def test_no_parallel_run_start(tmp_path):
    fx, profile = make(tmp_path)
    p = profile.model_copy(update={"cutover": profile.cutover.model_copy(update={"parallel_run_start": None})})
    with Store(fx.db_path) as store:
        d = gate.decide(p, store, now=NOW)
    assert d.blocking == ["cutover.parallel_run_start is not set in the profile"]
    # as if it started today: proven 11-20 + 14 = 12-04; disconnect max(12-04 + 30, 11-20 + 30) = 2027-01-03
    assert (d.proven_on, d.disconnect_on, d.notice_by) == (D(2026, 12, 4), D(2027, 1, 3), D(2026, 12, 4))
    assert d.pass_rates["new"]["runs"] == 14 * 24        # the last 14 days (from 11-06 12:01) of hourly runs
