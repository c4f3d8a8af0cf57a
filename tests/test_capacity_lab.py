"""Capacity on real paths: a tbf-shaped router between two namespaces, and an
unshaped loopback path where the measuring machine itself is the limit.

Theoretical fit through tbf at 2 Mbit/s each way, G.711/20 ms
-------------------------------------------------------------
tbf counts the bytes of each packet at layer 2 (IP packet + 14-byte Ethernet
header on a veth; no FCS, no preamble). One emulated call sends, each way,
50 packets/s of a 172-byte STAMP payload:

    frame   = 172 (STAMP) + 8 (UDP) + 20 (IPv4) + 14 (Ethernet) = 214 B
    per call = 214 * 8 * 50 = 85 600 bit/s
    fit     = 2 000 000 / 85 600 = 23.36  ->  23 calls

At 23 calls the router's queue is 98.4 % busy and drops nothing: the engine
spreads the calls evenly over the 20 ms (one packet every 0.87 ms against a
0.856 ms serialisation time), and the queue is sized to one ptime (tbf latency
20 ms = 5 kB + a 3.1 kB bucket), so even a burst of one packet from every call
(23 x 214 B = 4.9 kB, what randomly phased phones produce, or what a sender
stall shorter than a ptime bunches) fits. At 24 calls it is offered
24 * 85 600 - 2e6 = 54 400 bit/s (2.7 %) too much; the 8.1 kB of queue and
bucket absorb that for 1.2 s, so a 4 s step drops about
(54 400 / 8 * 4 - 8 100) / 214 = 89 of 4 800 packets, 1.9 % (1.6 % measured):
above the 1 % loss threshold. MOS alone would not catch it: 2 % loss and a few
ms of queueing give R = 93.2 - 0.024 * 84 - 95 * 2 / (2 + 25.1) = 84.2,
MOS 4.18 > 4.0 (MOS falls below 4.0 only near 4 % loss, about 25 calls). So at
this edge the loss threshold decides: the ramp must report 23 (24 at most, with
measurement noise) and limit "loss". A deeper queue would hide the edge in
short steps (it absorbs the excess for seconds), a shallower one would let
sender stalls on this shared machine cause drops below the fit; the test sets
the queue explicitly.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, needs_root, run_cli

RATE_BPS = 2_000_000
FRAME_B = 172 + 8 + 20 + 14
PER_CALL_BPS = FRAME_B * 8 * 50
FIT_CALLS = math.floor(RATE_BPS / PER_CALL_BPS)       # 23


def test_theoretical_fit_arithmetic():
    assert FRAME_B == 214 and PER_CALL_BPS == 85_600
    assert RATE_BPS / PER_CALL_BPS == pytest.approx(23.364, abs=0.001)
    assert FIT_CALLS == 23


@pytest.fixture(scope="module")
def shaped_path():
    """client - router - server; tbf 2 Mbit/s with a 20 ms queue on both router egresses;
    a reflector in the server namespace on the STAMP port."""
    from tests.lab.netns import Lab, lab_unavailable_reason
    reason = lab_unavailable_reason()
    if reason:
        pytest.skip(reason)
    with Lab() as lab:
        lab.chain(["client", "router", "server"])
        for peer in ("client", "server"):
            lab.shape("router", peer, rate_mbit=RATE_BPS / 1e6, latency_ms=20)
        server = lab.addr("server")
        lab.popen("server", [sys.executable, "-m", "harness", "reflector", "--listen",
                             f"{server}:862", "--no-tcp"], cwd=ROOT)
        for _ in range(50):        # up to 5 s for the reflector to bind
            ss = lab.run("server", ["ss", "-Huln"], check=False)
            if f"{server}:862" in ss.stdout:
                break
            time.sleep(0.1)
        else:
            pytest.fail("reflector did not start in the server namespace")
        yield lab, server


def _capacity_in_client(lab, *args: str, timeout: float = 150) -> tuple[int, dict, str]:
    cp = lab.run("client", [sys.executable, "-m", "harness", "probe", "capacity", *args, "--json"],
                 check=False, timeout=timeout)
    assert "Traceback" not in cp.stderr, cp.stderr
    return cp.returncode, json.loads(cp.stdout), cp.stderr


def _profile(tmp_path, server: str, planned: int) -> str:
    p = tmp_path / f"site-{planned}.yaml"
    p.write_text(f"""site: Lab site
planned: {{calls: {planned}, codec: g711, ptime_ms: 20}}
thresholds: {{mos_min: 4.0, loss_pct: 1.0, jitter_ms: 30}}
circuits:
  - {{name: old, role: old, down_mbps: 100, up_mbps: 100}}
  - {{name: new, role: new, down_mbps: 3, up_mbps: 3, reflector: "{server}:862"}}
""")
    return str(p)


@needs_root
@pytest.mark.lab
def test_profile_driven_capacity_through_tbf_is_within_one_call_of_the_fit(shaped_path, tmp_path):
    lab, server = shaped_path
    drops_before = lab.qdisc_stats("router", "server").get("drops", 0)
    code, out, err = _capacity_in_client(lab, "--profile", _profile(tmp_path, server, 20),
                                         "--circuit", "new", "--step", "4")
    steps = {s["calls"]: s for s in out["steps"]}
    n = out["max_calls"]
    assert abs(n - FIT_CALLS) <= 1, (n, json.dumps(out["steps"], indent=1), err)
    assert out["limit"] == "loss", json.dumps(out["steps"], indent=1)
    # the circuit's reflector and codec; the ramp started at the planned 20 calls and its
    # ceiling is the contract as voice alone: floor(3000 / 87.2) = 34 calls
    assert out["target"] == f"{server}:862" and out["codec"] == "g711" and out["steps"][0]["calls"] == 20
    assert (out["ceiling"], out["ceiling_source"], out["planned_calls"]) == (34, "contract", 20)
    # the step just above the answer lost packets in the router's queue, not in our socket
    above = steps[out["first_fail_calls"]]
    assert above["loss_pct"] > 1.0 and above["sender"]["rx_dropped"] == 0
    if out["first_fail_calls"] == FIT_CALLS + 1:
        # one call over the fit, only the loss threshold trips: MOS stays above 4.0 (docstring)
        assert above["failed"] == ["loss"] and above["mos"] > 4.0, above
    assert lab.qdisc_stats("router", "server").get("drops", 0) > drops_before
    assert steps[n]["loss_pct"] <= 1.0 and steps[n]["offered_kbps"] == pytest.approx(n * 87.2)
    # "carries 23 calls, 20 planned: PASS (15 % margin; loss limit at 24 calls)", exit 0
    margin = round((n - 20) / 20 * 100)
    assert out["summary"] == f"carries {n} calls, 20 planned: PASS ({margin} % margin; loss limit at {n + 1} calls)"
    assert code == 0 and out["pass"] is True and out["margin_pct"] == pytest.approx((n - 20) / 20 * 100)


@needs_root
@pytest.mark.lab
def test_profile_driven_fewer_than_planned_exits_1(shaped_path, tmp_path):
    lab, server = shaped_path
    # 4 s steps (see the module docstring: shorter ones put 24 calls near the 1 % line);
    # starting next to the edge with a ceiling of 25 keeps it to about four steps.
    code, out, _ = _capacity_in_client(lab, "--profile", _profile(tmp_path, server, 30), "--start", "22",
                                       "--max-calls", "25", "--step", "4")
    n = out["max_calls"]
    assert abs(n - FIT_CALLS) <= 1 and out["pass"] is False, json.dumps(out["steps"], indent=1)
    assert out["summary"].startswith(f"carries {n} calls, 30 planned: FAIL ({round((n - 30) / 30 * 100)} % margin")
    assert code == 1


def test_reflector_down_exits_3_with_the_cause(cli):
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:   # a port nobody answers on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    r = cli("probe", "capacity", f"127.0.0.1:{port}", "--planned", "5", "--json", timeout=60)
    out = json.loads(r.stdout)
    assert r.returncode == 3 and not out["measured"] and out["max_calls"] is None
    assert "reflector" in " ".join(out["errors"]) and "could not measure" in out["summary"]
    assert time.monotonic() - t0 < 15


@needs_root
@pytest.mark.lab
def test_unshaped_loopback_beyond_the_machine_reports_sender():
    """A ceiling of 20 000 calls (1 M packets/s each way) is far beyond what this
    machine can emulate: the ramp must end with the machine, not the path, as the limit.
    The first step, 12 000 calls (600k packets/s each way), is too: the batched engine
    sends about 250k/s on one core and the reflector answers far fewer (benchmarks/
    bench_engine.py), so that step cannot pass on any machine of this kind. Which of
    the two gives out first depends on the machine; the test accepts either, named."""
    # Every step opens new STAMP sessions (a new socket); the reflector keeps idle ones
    # for 30 s and caps them at 8192 per source by default, which a ramp through
    # thousands of calls would reach: raise the cap, this test is about the sender.
    code_refl = ("import sys, time; from probes.reflector import StampReflector; "
                 "r = StampReflector('127.0.0.1:0', max_sessions_per_source=65536); r.start(); "
                 "print(r.address[1], flush=True); time.sleep(float(sys.argv[1])); r.stop()")
    refl = subprocess.Popen([sys.executable, "-c", code_refl, "90"], stdout=subprocess.PIPE, text=True,
                            cwd=ROOT)
    try:
        port = int(refl.stdout.readline())
        cp = run_cli("probe", "capacity", f"127.0.0.1:{port}", "--start", "12000", "--max-calls", "20000",
                     "--quick", "--step", "0.5", "--json", timeout=120)
        out = json.loads(cp.stdout)
    finally:
        refl.terminate()
        refl.wait(timeout=10)
    assert out["measured"], out["errors"]
    assert out["limit"] == "sender", json.dumps(out["steps"], indent=1)
    assert out["max_calls"] < 12000 and out["ceiling"] == 20000
    failing = [s for s in out["steps"] if not s["pass"]]
    assert failing and all(s["failed"][0] == "sender" for s in failing)
    # The first step failed on the machine, with the evidence named: either the engine
    # flagged that it could not keep its schedule (a slower machine), or it kept it and
    # the loss is the loopback reflector's socket overflowing (a faster one, as on the
    # CI runner: lateness p99 0.38 ms, but replies lost). Either is "sender", never "the
    # network", and a step that is neither must not end up as "sender".
    first = out["steps"][0]
    assert first["calls"] == 12000, first
    assert not first["pass"] and first["failed"][0] == "sender", first
    engine_flagged = first["sender"]["behind"] or first["sender"]["limited"]
    reflector_overflowed = first["sender"].get("loopback") and "loss" in first["failed"]
    assert engine_flagged or reflector_overflowed, first
    assert "measuring machine, not the network" in out["summary"]
    assert cp.returncode == 0


def _loopback_reflector(key: bytes | None, lifetime_s: float = 60) -> tuple[subprocess.Popen, int]:
    code = ("import sys, time; from probes.reflector import StampReflector; "
            "key = sys.argv[2].encode() or None; "
            "r = StampReflector('127.0.0.1:0', key=key); r.start(); print(r.address[1], flush=True); "
            "time.sleep(float(sys.argv[1])); r.stop()")
    proc = subprocess.Popen([sys.executable, "-c", code, str(lifetime_s), (key or b"").decode()],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    return proc, int(proc.stdout.readline())


def test_profile_key_file_reaches_a_keyed_reflector(tmp_path):
    """The circuit's key_file is used (authenticated STAMP, 112-byte base packet padded to
    172 B); a wrong key gets no replies: exit 3 with the cause, not a capacity of 0."""
    refl, port = _loopback_reflector(b"s3cret-key")
    try:
        (tmp_path / "good.key").write_text("s3cret-key\n")
        (tmp_path / "bad.key").write_text("not-the-key\n")
        for name, key_file in (("good", "good.key"), ("bad", "bad.key")):
            (tmp_path / f"{name}.yaml").write_text(f"""site: Keyed
planned: {{calls: 2, codec: g711, ptime_ms: 20}}
circuits:
  - {{name: new, role: new, down_mbps: 1, up_mbps: 1, reflector: "127.0.0.1:{port}", key_file: {key_file}}}
""")
        good = run_cli("probe", "capacity", "--profile", str(tmp_path / "good.yaml"), "--max-calls", "3",
                       "--quick", "--step", "1", "--json", timeout=60)
        bad = run_cli("probe", "capacity", "--profile", str(tmp_path / "bad.yaml"), "--max-calls", "3",
                      "--quick", "--step", "1", "--json", timeout=60)
    finally:
        refl.terminate()
        refl.wait(timeout=10)
    out = json.loads(good.stdout)
    assert good.returncode == 0, out
    assert out["max_calls"] == 3 and out["limit"] == "max_calls" and out["packet_b"] == 172
    assert all(s["pass"] and s["loss_pct"] == 0 for s in out["steps"])
    out = json.loads(bad.stdout)
    assert bad.returncode == 3 and not out["measured"]
    assert "key" in " ".join(out["errors"]), out["errors"]


def test_sigterm_ends_the_ramp_with_what_was_measured(tmp_path):
    """SIGTERM mid-ramp (StopOnSignal in the command): the steps measured so far
    are reported as a partial result, exit 3, the signal named on stderr."""
    import signal

    from tests.harness_procs import ReflectorProc
    refl = ReflectorProc(tmp_path / "reflector.log")
    err_path = tmp_path / "stderr"
    try:
        with open(err_path, "w") as err:
            proc = subprocess.Popen([sys.executable, "-m", "harness", "probe", "capacity", f"127.0.0.1:{refl.port}",
                                     "--start", "2", "--max-calls", "4000", "--step", "1", "--json", "-v"],
                                    stdout=subprocess.PIPE, stderr=err, text=True, cwd=ROOT)
        try:
            deadline = time.monotonic() + 60
            # the first step's result line: the ramp is under way, with a step measured
            while "2 calls: loss" not in err_path.read_text() and time.monotonic() < deadline \
                    and proc.poll() is None:
                time.sleep(0.1)
            assert proc.poll() is None, err_path.read_text()[-2000:]
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    finally:
        refl.stop()
    errtext = err_path.read_text()
    assert proc.returncode == 3, errtext[-2000:]
    assert "cutover: SIGTERM: stopping the ramp" in errtext
    d = json.loads(out)
    assert d["partial"] is True and d["measured"] is True
    assert len(d["steps"]) >= 1 and d["steps"][0]["calls"] == 2
