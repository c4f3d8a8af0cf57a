"""Call-platform requirements through a real impaired path (issue #18): our
reflector behind the impairment relay (tests/lab/relay.py, its own process), the
stream measured for real and judged by the same evaluator `cutover check` uses.

- 25 ms each way, +/-2 ms jitter: meets Teams client-to-edge and customer-edge
  (RTT ~50 ms < 60 and 100; jitter ~1.3 ms; no loss).
- The same plus 0.5 % random loss each way, through `cutover check --step stream`:
  fails customer edge to edge on loss (1000 packets a direction: P(no loss at all)
  = e^-10), with the figure and the 0.1 % limit named; exit 1; checks stored.
- 60 ms each way: fails Teams on RTT (~120 ms > 100) and one-way latency.
- 60 s with one 300 ms silence both ways: 15 of 3000 packets lost on the way out
  (the far end got none of them, so none were lost on the way back), 0.5 % on
  average, 15 / 750 = 2 % in the worst 15 s window: the Teams 15 s loss requirement
  fails while the plain loss check (1 %) passes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest

from harness import platforms
from harness.profile import load_profile
from harness.store import Store
from harness.suite import stream as stream_step
from probes import stream
from probes.reflector import StampReflector
from tests.lab import Impairment, impairment_relay

pytestmark = pytest.mark.slow


@pytest.fixture
def reflector():
    r = StampReflector("127.0.0.1:0").start()
    yield r
    r.stop()


def _profile(tmp_path, target: str, platforms_: list[str]):
    p = tmp_path / "site.yaml"
    p.write_text(f"site: Lab\nplanned: {{calls: 4, codec: g711, platforms: {json.dumps(platforms_)}}}\n"
                 f"circuits:\n  - {{name: new, role: new, down_mbps: 100, up_mbps: 20, reflector: '{target}'}}\n")
    return p


def _measure(target: str, duration_s: float, **kw) -> dict:
    return stream.run(stream.StreamConfig(target=target, duration_s=duration_s, ptime_ms=20,
                                          timeout_s=3.0, **kw)).to_dict()


def _judge(profile_path, raw):
    prof = load_profile(profile_path)
    checks = stream_step.evaluate(prof, prof.circuits[0], raw)
    return {c.id: c for c in checks}, platforms.summarize(checks)


def test_clean_25ms_path_meets_teams_both_segments(reflector, tmp_path):
    up = down = Impairment(delay_ms=25, jitter_ms=2)
    with impairment_relay(tuple(reflector.address), up=up, down=down, seed=3, max_seconds=60) as relay:
        target = "%s:%d" % relay.address
        raw = _measure(target, 6.0)
    assert raw["measured"] and raw["direction_split"] is True
    assert 50 <= raw["rtt_ms"]["p95"] < 58                   # 50 + jitter (at most +4) + base RTT
    _, s = _judge(_profile(tmp_path, target, ["teams", "teams-edge"]), raw)
    assert s["teams"].meets and s["teams"].passed == s["teams"].total == 6, s["teams"].failed
    assert s["teams-edge"].meets, s["teams-edge"].failed


def test_half_percent_loss_fails_customer_edge_through_cutover_check(reflector, tmp_path):
    imp = Impairment(delay_ms=25, jitter_ms=2, loss_pct=0.5)
    with impairment_relay(tuple(reflector.address), up=imp, down=imp, seed=11, max_seconds=120) as relay:
        target = "%s:%d" % relay.address
        prof = _profile(tmp_path, target, ["teams-edge"])
        db = tmp_path / "h.sqlite"
        run = subprocess.run([sys.executable, "-m", "harness", "check", str(prof), "--step", "stream",
                              "--db", str(db), "--json", "-q"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stderr
    out = json.loads(run.stdout)
    edge = out["circuits"]["new"]["platforms"]["teams-edge"]
    assert edge["meets"] is False
    failed = {f["requirement"]: f["reason"] for f in edge["failed"]}
    assert "loss_15s" in failed and "> 0.1 % limit for teams-edge" in failed["loss_15s"]
    with Store(db) as store:
        rec = store.latest_run("Lab").circuits["new"]
    stored = {c.id: c for c in rec.checks}
    assert stored["stream.platform.teams-edge.loss_15s"].status == "fail"
    assert stored["stream.platform.teams-edge.loss_15s"].required == 0.1


def test_60ms_each_way_fails_teams_on_rtt(reflector, tmp_path):
    imp = Impairment(delay_ms=60)
    with impairment_relay(tuple(reflector.address), up=imp, down=imp, seed=5, max_seconds=60) as relay:
        target = "%s:%d" % relay.address
        raw = _measure(target, 4.0)
    checks, s = _judge(_profile(tmp_path, target, ["teams"]), raw)
    assert not s["teams"].meets
    assert {f["requirement"] for f in s["teams"].failed} == {"rtt", "latency"}
    assert checks["stream.platform.teams.rtt"].measured > 100


def test_300ms_silence_fails_the_15s_window_not_the_average(reflector, tmp_path):
    with impairment_relay(tuple(reflector.address), seed=9, max_seconds=120) as relay:
        target = "%s:%d" % relay.address
        timer = threading.Timer(30.0, lambda: relay.blackout(300))
        timer.start()
        try:
            raw = _measure(target, 60.0)
        finally:
            timer.cancel()
    sent = raw["packets"]["sent"]
    assert sent == 3000
    # 300 ms = 15 packets (+/- one at the edges of the silence), all lost on the way out:
    # the far end received none of them, so none could be lost on the way back
    assert 0.4 <= raw["loss_pct"]["up"] <= 0.6 and raw["loss_pct"]["down"] == 0
    assert 1.8 <= raw["worst_window"]["15s"]["loss_pct"]["up"] <= 2.2
    checks, s = _judge(_profile(tmp_path, target, ["teams"]), raw)
    assert checks["stream.loss_up"].status == "pass" and checks["stream.loss_down"].status == "pass"
    assert checks["stream.platform.teams.loss_15s"].status == "fail"
    assert not s["teams"].meets
    assert "loss_15s" in {f["requirement"] for f in s["teams"].failed}
