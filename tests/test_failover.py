"""The failover drill (`cutover probe failover`) through the lab relay: the path
goes silent both ways mid-drill (relay ``blackout``), as when the primary line
fails and the router moves the calls to the backup.

* 800 ms silence in a 30 s drill: one interruption of 800 ms within two packet
  intervals (2 x 20 ms), recovered, MOS before/after, verdict pass against the
  default 1000 ms (exit 0); stored in the profile's history as a "drill" run.
* 3 s silence that comes back from new source ports (a NAT rebinding): the
  verdict fails with a sentence naming the gap and the threshold (exit 1), the
  far end's new session is reported (source_changed), and a --trigger command
  ran at its second.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from harness.suite.failover import checks as failover_checks
from probes.reflector import StampReflector
from tests.conftest import ROOT
from tests.lab import impairment_relay

PTIME_MS = 20


@pytest.fixture
def reflector():
    r = StampReflector("127.0.0.1:0").start()
    yield r
    r.stop()


def _drill(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "harness", "probe", "failover", *args, "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)


def _finish(p: subprocess.Popen, timeout_s: float) -> tuple[int, dict, str]:
    try:
        out, err = p.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    assert "Traceback" not in err
    return p.returncode, json.loads(out), err


def test_800_ms_silence_passes_and_is_stored(reflector, tmp_path):
    host, port = reflector.address[:2]
    profile = tmp_path / "site.yaml"
    db = tmp_path / "h.sqlite"
    with impairment_relay((host, port), max_seconds=90) as relay:
        profile.write_text(
            "site: lab\nplanned: {calls: 3}\ndb: h.sqlite\n"
            "cutover: {checklist: [{id: failover, title: Backup line failover tested}]}\n"
            "circuits:\n  - {name: fibre, role: new, down_mbps: 100, up_mbps: 100, "
            f"reflector: '{relay.address[0]}:{relay.address[1]}'}}\n")
        p = _drill(["--profile", str(profile), "--circuit", "fibre", "--duration", "30"])
        time.sleep(15)
        relay.blackout(800)
        rc, d, err = _finish(p, 90)
    assert rc == 0, err
    for key in ("interruptions", "max_gap_ms", "source_changed", "recovered", "recovery_s",
                "mos_before", "mos_after"):
        assert key in d
    (it,) = d["interruptions"]
    assert abs(it["duration_ms"] - 800) <= 2 * PTIME_MS
    assert it["calls"] == 3 and it["source_changed"] is False
    assert abs(it["duration_ms_dir"]["up"] - 800) <= 2 * PTIME_MS
    # both ways silent: what was sent in the silence is lost on the way there; the replies in
    # flight when it began (loopback: next to none) on the way back
    assert abs(it["up_lost"] - 3 * 800 / PTIME_MS) <= 3 * 2
    assert abs(d["max_gap_ms"]["rtt"] - 800) <= 2 * PTIME_MS
    assert d["recovered"] is True and d["source_changed"] is False
    assert d["mos_before"] > 4.0 and d["mos_after"] > 4.0 and d["mos_during"] < d["mos_before"]
    assert d["recovery_s"] is not None and 0.8 <= d["recovery_s"] <= 5.0
    assert d["ttl_before"] == d["ttl_after"] == 64            # loopback: Linux's default TTL
    assert d["verdict"] == "pass" and d["max_gap_ms_allowed"] == 1000
    # stored as a drill run in the site's history
    from harness.store import Store
    store = Store(db)
    try:
        (run,) = store.runs("lab", kind="drill")
        assert run.id == d["stored_run"] and run.kind == "drill" and run.verdict == "GO"
        stored = run.circuits["fibre"]
        assert {c.id for c in stored.checks} == {"failover.gap", "failover.recovered", "failover.source"}
        assert stored.raw["failover"]["interruptions"][0]["start"] == it["start"]
        assert store.runs("lab") == [] and store.latest_run("lab") is None   # a drill is no check run
        # the board's checklist shows the item satisfied by the drill
        import datetime as dt
        from harness.profile import load_profile
        from harness.tui.loader import BoardLoader
        board = BoardLoader(load_profile(profile), store).load(dt.datetime.now(dt.timezone.utc))
        (row,) = [r for r in board.checklist if r.id.endswith("failover")]
        assert row.ok and row.kind == "auto"
    finally:
        store.close()
    # the failover checklist item is satisfied by the passing drill, without a signature
    from tests.conftest import run_cli
    g = json.loads(run_cli("gate", str(profile), "--json").stdout)
    (item,) = [i for i in g["items"] if i["id"] == "checklist:failover"]
    assert item["status"] == "ok" and item["kind"] == "auto"
    assert item["detail"].startswith("failover drill on fibre passed on ")
    assert f"longest silence {d['max_gap_ms']['rtt']:.0f} ms (allowed 1000 ms)" in item["detail"]


def test_3_s_silence_with_new_source_ports_fails_with_the_reason(reflector, tmp_path):
    host, port = reflector.address[:2]
    marker = tmp_path / "triggered"
    with impairment_relay((host, port), max_seconds=90) as relay:
        p = _drill(["%s:%d" % relay.address, "--duration", "15", "--calls", "2",
                    "--trigger", f"date +%s.%N > {marker}", "--trigger-at", "2"])
        t0 = time.time()
        time.sleep(5)
        relay.blackout(3000, rebind=True)
        rc, d, err = _finish(p, 90)
    assert rc == 1
    (it,) = d["interruptions"]
    assert abs(it["duration_ms"] - 3000) <= 2 * PTIME_MS
    assert it["source_changed"] is True and d["source_changed"] is True
    assert d["recovered"] is True
    gap = [c for c in d["checks"] if c["id"] == "failover.gap"][0]
    assert gap["status"] == "fail"
    assert gap["reason"] == (f"the calls went silent for {d['max_gap_ms']['rtt']:g} ms > 1000 ms allowed "
                             "(cutover.failover_max_gap_ms)")
    src = [c for c in d["checks"] if c["id"] == "failover.source"][0]
    assert src["status"] == "warn" and "re-register" in src["reason"]
    # the trigger ran once, about 2 s in (the drill started after the interpreter did)
    assert d["trigger"]["exit_code"] == 0 and d["trigger"]["started"]
    ran_at = float(marker.read_text())
    assert t0 + 1.0 < ran_at < t0 + 5.0


def test_checks_by_hand():
    base = {"measured": True, "recovered": True, "source_changed": False, "interruptions": [{}]}
    (gap, rec, src) = failover_checks(dict(base, max_gap_ms={"rtt": 800.0}), 1000)
    assert (gap.status, gap.margin, rec.status, src.status) == ("pass", 200.0, "pass", "pass")
    (gap, *_rest) = failover_checks(dict(base, max_gap_ms={"rtt": 1000.0}), 1000)
    assert gap.status == "pass"                       # at the limit: allowed
    (gap, rec, _src) = failover_checks(dict(base, max_gap_ms={"rtt": 5000.0}, recovered=False), 1000)
    assert gap.status == "fail" and rec.status == "fail"
    (only,) = failover_checks({"measured": True, "interruptions": [], "max_gap_ms": {"rtt": 0.0}}, 1000)
    assert only.status == "warn" and "does not show a failover" in only.reason
    (err,) = failover_checks({"measured": False, "errors": ["no reply"]}, 1000)
    assert err.status == "error"


def test_cli_bad_input_exits_2():
    from tests.conftest import run_cli
    r = run_cli("probe", "failover", "127.0.0.1:862", "--trigger", "true")
    assert r.returncode == 2 and "--trigger-at: the trigger command and the time to run it go together" in r.stderr
    r = run_cli("probe", "failover", "127.0.0.1:862", "--duration", "2")
    assert r.returncode == 2 and "5-3600 s" in r.stderr
    r = run_cli("probe", "failover", "--circuit", "x")
    assert r.returncode == 2 and "--circuit needs --profile" in r.stderr


def test_drill_decides_the_failover_checklist_item():
    import datetime as dt
    import types
    from harness.gate import _drill_item
    t = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.timezone.utc)
    item = types.SimpleNamespace(id="failover", title="failover tested")
    good = {"at": t, "circuit": "fibre", "passed": True, "verdict": "GO", "max_gap_ms": 800.0,
            "allowed_ms": 1000.0}
    bad = dict(good, at=t + dt.timedelta(hours=1), passed=False, verdict="NO-GO", max_gap_ms=3000.0)
    signed = types.SimpleNamespace(by="K. Nurse", at=t + dt.timedelta(minutes=30), revoked=False)
    assert _drill_item(item, None, [good]).status == "ok"                  # a passing drill suffices
    assert _drill_item(item, None, [good, bad]).status == "block"           # the latest failed
    assert "FAILED" in _drill_item(item, signed, [good, bad]).detail        # ... after the sign-off
    assert _drill_item(item, signed, [bad, dict(good, at=t + dt.timedelta(hours=2))]) is None  # signature
    assert _drill_item(types.SimpleNamespace(id="vlan", title="x"), None, [good]) is None
    assert _drill_item(item, None, []) is None
