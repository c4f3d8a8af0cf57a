"""Suite steps' evaluate() on hand-made raw JSON (docs/contract.md §5 shapes), and the
runner: probe failures become error checks, a dead reflector is NO-GO for its
circuit only, runs are stored."""

import socket
import threading
import types

import pytest

from harness import suite
from harness.profile import DEMO_PROFILE, load_profile
from harness.runner import measure_circuit, reflector_problem, run_check
from harness.store import Store
from harness.suite import bandwidth, latency, stream

# docs/contract.md §5 stream example
STREAM_RAW = {"probe": "stream", "target": "192.0.2.10:862", "codec": "g711", "ptime_ms": 20,
              "calls": 1, "duration_s": 30, "direction_split": True,
              "packets": {"sent": 1500, "reflected": 1470, "received": 1441},
              "loss_pct": {"up": 2.0, "down": 2.0, "total": 3.9},
              "rtt_ms": {"min": 61.2, "mean": 80.4, "p50": 80.1, "p95": 94.0, "p99": 97.5, "max": 99.8},
              "jitter_ms": {"up": 6.7, "down": 6.6},
              "dscp": {"sent": 46, "received": 46, "preserved": True},
              "mos": 4.05, "r_factor": 82.3,
              "sender": {"lateness_ms": {"p50": 0.05, "p99": 0.4}, "rx_dropped": 0},
              "errors": [], "partial": False, "measured": True}


@pytest.fixture(scope="module")
def profile():
    return load_profile(DEMO_PROFILE)   # owd 150 ms, jitter 30 ms, loss 1 %, MOS 4.0, 20 G.711 calls


def by_id(checks):
    return {c.id: c for c in checks}


def test_stream_evaluate_design_example(profile):
    c = by_id(stream.evaluate(profile, profile.circuit("new"), STREAM_RAW))
    assert set(c) == {"stream.mos", "stream.jitter_up", "stream.jitter_down", "stream.loss_up",
                      "stream.loss_down", "stream.delay", "stream.dscp"}
    assert (c["stream.mos"].status, c["stream.mos"].margin) == ("warn", pytest.approx(0.05))
    assert c["stream.jitter_up"].status == "pass" and c["stream.jitter_up"].margin == pytest.approx(23.3)
    assert c["stream.loss_up"].status == "fail" and c["stream.loss_up"].margin == pytest.approx(-1.0)
    assert c["stream.loss_up"].reason == "upstream loss 2 % > 1 % limit"
    assert c["stream.delay"].measured == pytest.approx(47.0) and c["stream.delay"].margin == pytest.approx(103.0)
    assert c["stream.dscp"].status == "pass"


def test_stream_dscp_remarked_and_sender_limited_warn(profile):
    raw = dict(STREAM_RAW, mos=4.3, loss_pct={"up": 0.0, "down": 0.0, "total": 0.0},
               dscp={"sent": 46, "received": 0, "preserved": False},
               sender={"lateness_ms": {"p99": 3.2}, "rx_dropped": 0, "limited": True,
                       "reason": "send lateness p99 3.2 ms > 1 ms"})
    c = by_id(stream.evaluate(profile, profile.circuit("new"), raw))
    assert c["stream.dscp"].status == "warn" and "46 sent, 0 arrived" in c["stream.dscp"].reason
    assert c["stream.sender"].status == "warn" and "3.2 ms" in c["stream.sender"].reason
    assert {x.status for x in c.values()} == {"pass", "warn"}


def test_stream_without_direction_split_never_guesses(profile):
    raw = dict(STREAM_RAW, direction_split=False, jitter_ms={"rtt": 12.0},
               loss_pct={"total": 0.2}, mos=4.3)
    c = by_id(stream.evaluate(profile, profile.circuit("new"), raw))
    assert "stream.loss_up" not in c
    assert c["stream.loss"].measured == 0.2 and "cannot split directions" in c["stream.loss"].reason
    assert c["stream.jitter"].margin == pytest.approx(18.0)


def test_not_measured_and_partial(profile):
    cir = profile.circuit("new")
    (e,) = stream.evaluate(profile, cir, {"measured": False, "errors": ["no reply from 127.0.0.1:9"]})
    assert e.status == "error" and e.reason == "stream: no reply from 127.0.0.1:9"
    part = by_id(stream.evaluate(profile, cir, dict(STREAM_RAW, partial=True, errors=["reflector went away"])))
    assert part["stream.complete"].status == "error" and "reflector went away" in part["stream.complete"].reason


def test_bandwidth_evaluate_hand_computed(profile):
    # required = (20 x 87.2 kbit/s + 1 x 1.5 + 5 Mbit/s) x 1.2 = 9.8928 Mbit/s per direction
    raw = {"backend": "reflector", "down_mbps": 9.5, "up_mbps": 10.5, "streams": 2, "duration_s": 2,
           "latency_ms": {"idle_p50": 10.0, "down_load_p50": 250.0, "up_load_p50": 40.0, "increase_p50": 240.0},
           "errors": [], "partial": False, "measured": True}
    c = by_id(bandwidth.evaluate(profile, profile.circuit("old"), raw))
    assert c["bandwidth.down"].status == "fail"
    assert c["bandwidth.down"].required == pytest.approx(9.893)
    assert c["bandwidth.down"].margin == pytest.approx(9.5 - 9.893)
    assert c["bandwidth.down"].reason == ("downstream 9.5 Mbit/s < 9.89 Mbit/s needed for 20 G.711 calls, "
                                          "1 video call and 5 Mbit/s other traffic (+20 % headroom)")
    assert c["bandwidth.up"].status == "warn"            # 9.893 <= 10.5 < 10.88
    # old contract 100/20 Mbit/s: 80 % floors 80 and 16
    assert c["bandwidth.down_contract"].status == "warn" and c["bandwidth.down_contract"].required == 80
    assert "< 80 % of the 100 Mbit/s contract" in c["bandwidth.down_contract"].reason
    assert c["bandwidth.up_contract"].status == "warn"
    assert (c["bandwidth.loaded_rtt"].status, c["bandwidth.loaded_rtt"].margin) == ("pass", 50.0)
    assert (c["bandwidth.latency_increase"].status, c["bandwidth.latency_increase"].margin) == ("fail", -180.0)
    assert c["bandwidth.latency_increase"].reason == ("latency rise under load 240 ms > 60 ms the de-jitter "
                                                      "buffer absorbs")


def test_latency_evaluate(profile):
    raw = {"probe": "latency", "method": "icmp", "rtt_ms": {"p50": 200.0, "p95": 320.0}, "loss_pct": 0.5,
           "measured": True, "errors": []}
    c = by_id(latency.evaluate(profile, profile.circuit("new"), raw))
    assert (c["latency.rtt"].status, c["latency.rtt"].margin) == ("fail", -20.0)
    assert c["latency.rtt"].reason == "RTT p95 (icmp) 320 ms > 300 ms limit (2 x 150 ms one-way)"
    assert (c["latency.loss"].status, c["latency.loss"].margin) == ("pass", 0.5)
    assert latency.target(profile.circuit("new")) == "127.0.0.1"


def test_registry_order_and_missing_steps():
    names = [s.NAME for s in suite.steps()]
    assert names == [n for n in suite.ORDER if n in names]
    assert set(names) | set(suite.unavailable()) == set(suite.ORDER)


# ---------------------------------------------------------------- runner with fake steps

def _step(name, *, raises=None, raw=None, checks=None, needs=True):
    def measure(profile, circuit, *, quick, progress, stop):
        if raises:
            raise raises
        progress(types.SimpleNamespace(kind="progress", fraction=0.5, message="half"))
        return raw or {"measured": True}

    def evaluate(profile, circuit, r):
        return checks(r) if checks else [stream.at_least(f"{name}.x", "x", 2.0, 1.0)]
    return types.SimpleNamespace(NAME=name, applies=lambda p, c: needs, measure=measure, evaluate=evaluate)


def test_probe_exception_is_an_error_check_not_a_crash(profile):
    steps = [_step("latency"), _step("sip", raises=RuntimeError("boom"))]
    co = measure_circuit(profile, profile.circuit("new"), steps=steps)
    assert co.verdict == "NO-GO"
    assert [(c.id, c.status) for c in co.checks] == [("latency.x", "pass"), ("sip.measured", "error")]
    assert "RuntimeError: boom" in co.checks[1].reason


def test_run_is_stored_and_progress_reported(profile, tmp_path):
    st = Store(tmp_path / "h.sqlite")
    seen = []
    out = run_check(profile, store=st, steps=[_step("latency")],
                    progress=lambda c, s, f, m: seen.append((c, s, f, m)))
    assert out.verdict == "GO" and not out.nothing_measured
    assert ("old", "latency", 0.5, "half") in seen and ("new", "latency", 1.0, "done (GO)") in seen
    rec = st.latest_run(profile.site)
    assert rec.id == out.run_id and rec.complete and rec.verdict == "GO"
    assert set(rec.circuits) == {"old", "new"} and rec.circuits["new"].raw["latency"] == {"measured": True}
    assert st.profile_snapshot(rec.id)["site"] == profile.site
    assert set(out.to_dict()) >= {"verdict", "circuits", "run_id"}


def test_stop_event_ends_remaining_steps(profile):
    stop = threading.Event()
    stop.set()
    co = measure_circuit(profile, profile.circuit("new"), steps=[_step("latency")], stop=stop)
    assert co.checks[0].status == "error" and "stopped" in co.checks[0].reason


def _closed_udp_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_dead_reflector_is_no_go_for_that_circuit_only(profile):
    """Preflight against a real closed UDP port: the reflector steps become
    errors with the cause; the other circuit's steps still run."""
    from probes.reflector import StampReflector
    prof = profile.model_copy(deep=True)
    prof.circuits[0].reflector = f"127.0.0.1:{_closed_udp_port()}"
    r = StampReflector("127.0.0.1:0").start()
    try:
        prof.circuits[1].reflector = f"127.0.0.1:{r.address[1]}"
        out = run_check(prof, steps=[_step("stream"), _step("latency", needs=True)])
    finally:
        r.stop()
    old, new = out.circuits["old"], out.circuits["new"]
    assert old.verdict == "NO-GO" and new.verdict == "GO"
    err = by_id(old.checks)["stream.measured"]
    assert err.status == "error" and "is down: nothing listens on UDP port" in err.reason
    assert by_id(old.checks)["latency.x"].status == "pass"     # not a reflector step: still measured
    assert out.verdict == "NO-GO" and not out.nothing_measured


def test_preflight_against_real_reflector_and_wrong_key(profile):
    from probes.reflector import StampReflector
    r = StampReflector("127.0.0.1:0", key=b"k" * 32).start()
    try:
        cir = profile.circuit("new").model_copy(update={"reflector": f"127.0.0.1:{r.address[1]}"})
        assert reflector_problem(cir, b"k" * 32) is None
        why = reflector_problem(cir, None, tries=1, timeout_s=0.3)   # it drops unauthenticated packets
        assert why is not None and "does not answer" in why
    finally:
        r.stop()
