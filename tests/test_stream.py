"""The stream probe and engine on loopback: exact per-direction accounting
against a scripted reflector (known drops, duplicates, reordering, stateless
mode), the unimpaired path, keys, faults and the CLI contract.

Accuracy through an impaired path (relay + irtt) is in test_stream_accuracy.py.
"""

from __future__ import annotations

import json
import math
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from probes import stream
from probes.voice import emodel
from probes.wire import stamp
from probes.reflector import StampReflector
from tests.conftest import run_cli

KEY = b"stream-test-key"

# every key of the docs/contract.md §5 example
DESIGN_KEYS = {"probe", "target", "codec", "ptime_ms", "calls", "duration_s", "direction_split", "packets",
               "loss_pct", "rtt_ms", "jitter_ms", "ipdv_ms", "reorder_pct", "duplicates", "late_pct", "dscp",
               "mos", "r_factor", "sender", "errors", "partial"}


class ScriptedReflector:
    """A STAMP reflector with deterministic faults, built on stamp.reflect_into.

    drop_up(seq): request never "arrives" (not numbered, no reply);
    drop_down(refl_seq): numbered, reply not sent; dup(seq): reply sent twice;
    hold(seq): reply held back until the session's next reply (reordering);
    stateless: reflector sequence number = sender's (RFC 8762 stateless mode).
    """

    def __init__(self, drop_up=None, drop_down=None, dup=None, hold=None, stateless=False,
                 dscp_seen=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.drop_up, self.drop_down = drop_up or (lambda s: False), drop_down or (lambda s: False)
        self.dup, self.hold = dup or (lambda s: False), hold or (lambda s: False)
        self.stateless, self.dscp_seen = stateless, dscp_seen
        self.counters: dict = {}
        self.held: dict = {}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._serve, daemon=True)
        self._t.start()

    @property
    def target(self) -> str:
        return "127.0.0.1:%d" % self.sock.getsockname()[1]

    def _serve(self):
        buf = bytearray(4096)
        while not self._stop.is_set():
            try:
                n, addr = self.sock.recvfrom_into(buf)
            except socket.timeout:
                continue
            except OSError:
                return
            seq = int.from_bytes(buf[0:4], "big")
            ssid = int.from_bytes(buf[14:16], "big")
            if self.drop_up(seq):
                continue
            key = (addr, ssid)
            rseq = seq if self.stateless else self.counters.get(key, 0)
            self.counters[key] = self.counters.get(key, 0) + 1
            now = stamp.ntp_from_ns(time.time_ns())
            stamp.reflect_into(buf, n, refl_seq=rseq, rx_ntp=now, tx_ntp=now,
                               dscp_received=46 if self.dscp_seen is None else self.dscp_seen)
            reply = bytes(buf[:n])
            if self.drop_down(rseq):
                continue
            if self.hold(seq):
                self.held[key] = reply
                continue
            self.sock.sendto(reply, addr)
            if key in self.held:
                self.sock.sendto(self.held.pop(key), addr)
            if self.dup(seq):
                self.sock.sendto(reply, addr)

    def close(self):
        self._stop.set()
        self._t.join(2)
        self.sock.close()


@pytest.fixture
def scripted():
    made = []

    def make(**kw):
        r = ScriptedReflector(**kw)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


@pytest.fixture
def real_reflector():
    r = StampReflector("127.0.0.1:0").start()
    yield r
    r.stop()


def run_stream(target, **kw):
    kw.setdefault("duration_s", 2.0)
    kw.setdefault("timeout_s", 2.0)
    return stream.run(stream.StreamConfig(target=target, **kw))


def test_loss_split_by_direction_exactly(scripted):
    # per call: sender seq 1..100; 10 dropped upstream (seq % 10 == 0) -> 90 reflected,
    # numbered 0..89; replies numbered 24, 49, 74 dropped downstream -> 87 received
    r = scripted(drop_up=lambda s: s % 10 == 0, drop_down=lambda rs: rs % 25 == 24)
    res = run_stream(r.target, calls=3)
    assert res.measured and not res.partial and res.direction_split is True
    assert res.packets == {"sent": 300, "reflected": 270, "received": 261}
    assert res.loss_pct["up"] == pytest.approx(10.0)
    assert res.loss_pct["down"] == pytest.approx(100 * 9 / 270)
    assert res.loss_pct["total"] == pytest.approx(13.0)
    # loss in time, by hand: upstream loses every 10th packet of each call: runs of one (20 ms);
    # 90 received packets have a successor, 10 of them a lost one (p = 1/9), every loss is
    # followed by a received packet (q = 1): BurstR = 1 / (1/9 + 1) = 0.9 (more regular than
    # random; the E-model then takes 1). Any 10 consecutive packets of a call hold exactly one
    # loss: every 200 ms window (and the whole 2 s run, shorter than 15 s) loses 10 %.
    assert res.max_gap_ms == {"up": 20.0, "down": 20.0, "rtt": 20.0}   # the down losses fall on 27, 55, 83
    assert res.burst_ratio["up"] == pytest.approx(0.9)
    assert res.worst_window["200ms"]["loss_pct"]["up"] == pytest.approx(10.0)
    assert res.worst_window["15s"]["loss_pct"]["up"] == pytest.approx(10.0)
    assert res.worst_window["15s"]["loss_pct"]["down"] == pytest.approx(100 * 9 / 270)
    assert res.interruptions == [] and res.restarts == []
    # MOS per listening direction from that direction's loss (no late packets on loopback)
    assert res.late_pct == 0
    one_way = res.rtt_ms["mean"] / 2
    up = emodel.score("g711", one_way, 10.0, jitter_buffer_ms=60, ptime_ms=20)
    down = emodel.score("g711", one_way, 100 * 9 / 270, jitter_buffer_ms=60, ptime_ms=20)
    assert res.mos_up == pytest.approx(up.mos) and res.mos_down == pytest.approx(down.mos)
    assert res.mos == pytest.approx(min(up.mos, down.mos)) and res.r_factor == pytest.approx(up.r_factor)


def test_stateless_reflector_is_detected_and_loss_is_halved_for_mos(scripted):
    r = scripted(drop_up=lambda s: s % 10 == 0, drop_down=lambda rs: rs % 25 == 24, stateless=True)
    res = run_stream(r.target, calls=2)
    d = res.to_dict()
    assert d["direction_split"] is False and d["packets"]["reflected"] is None
    lost_down_per_call = sum(1 for s in range(1, 101) if s % 10 and s % 25 == 24)   # 24, 49, 74 (not 99)
    expected_total = 100 * (2 * (10 + lost_down_per_call)) / 200
    assert res.loss_pct["total"] == pytest.approx(expected_total)
    assert math.isnan(res.loss_pct["up"]) and math.isnan(res.loss_pct["down"])
    # loss in time, by hand: each call loses 10 20 24 30 40 49-50 60 70 74 80 90 99-100: 12 runs.
    # 86 received packets have a successor, 12 of them a lost one (p = 12/86); 13 lost packets
    # have one, 11 of them a received one (q = 11/13): BurstR = 1 / (p + q) = 1.0145
    burst_r = 1 / (12 / 86 + 11 / 13)
    assert res.burst_ratio["rtt"] == pytest.approx(burst_r)
    assert res.max_gap_ms["rtt"] == 40.0 and res.max_gap_ms["up"] is None
    half = emodel.score("g711", res.rtt_ms["mean"] / 2, expected_total / 2, jitter_buffer_ms=60, ptime_ms=20,
                        burst_ratio=burst_r)
    assert res.mos == pytest.approx(half.mos)
    assert any("stateless" in n for n in res.notes)
    assert json.loads(json.dumps(run_cli_json_safe(d)))["loss_pct"]["up"] is None


def run_cli_json_safe(d):
    from probes.result import clean
    return clean(d)


def test_duplicates_and_reordering_are_counted(scripted):
    # per call over 1 s (seq 1..50): duplicates of seq 7, 14, ..., 49 (7 of them);
    # replies to seq 5, 25, 45 held back behind the next one (3 reordered)
    r = scripted(dup=lambda s: s % 7 == 0, hold=lambda s: s % 20 == 5)
    res = run_stream(r.target, calls=2, duration_s=1.0)
    assert res.duplicates == 2 * 7
    assert res.packets["received"] == 100 and res.loss_pct["total"] == 0
    assert res.reorder_pct == pytest.approx(100 * 2 * 3 / 100)


def test_dscp_bleached_at_the_far_end_is_reported(scripted):
    r = scripted(dscp_seen=0)
    res = run_stream(r.target, duration_s=0.5)
    # the scripted reflector saw (says) 0 and sends its replies unmarked
    assert res.dscp == {"sent": 46, "received": 0, "preserved": False, "down_received": 0}


def test_unimpaired_loopback(real_reflector):
    host, port = real_reflector.address
    res = run_stream(f"{host}:{port}", calls=4, duration_s=2.0)
    assert res.measured and res.direction_split
    assert res.packets == {"sent": 400, "reflected": 400, "received": 400}
    assert res.loss_pct == {"up": 0.0, "down": 0.0, "total": 0.0}
    assert res.rtt_ms["p50"] < 1.0
    assert res.dscp["preserved"] is True
    # docs/contract.md §4: d = RTT/2 + 60 ms buffer + 20 ms ptime ~ 80 ms -> R 91.3, MOS 4.37
    assert res.r_factor == pytest.approx(91.3, abs=0.05)
    assert res.mos == pytest.approx(4.37, abs=0.005)
    # 4.41 is the G.711 ceiling at d = 0, which no real call reaches
    assert emodel.max_mos("g711") == pytest.approx(4.41, abs=0.005)
    assert res.sender["rx_dropped"] == 0


def test_authenticated_stream():
    r = StampReflector("127.0.0.1:0", key=KEY).start()
    try:
        host, port = r.address
        ok = run_stream(f"{host}:{port}", key=KEY, duration_s=0.6)
        assert ok.measured and ok.loss_pct["total"] == 0 and ok.payload_b == 172
        bad = run_stream(f"{host}:{port}", key=b"wrong", duration_s=5, timeout_s=1.0)
        assert not bad.measured and "key is wrong" in bad.errors[0]
        assert r.stats.auth_failed > 0
    finally:
        r.stop()


def test_bad_arguments_raise_value_error():
    for kw in ({"codec": "g999"}, {"ptime_ms": 7}, {"calls": 0}, {"duration_s": 0},
               {"calls": 5000, "duration_s": 60}):           # 15M packets of state: refused up front
        with pytest.raises(ValueError):
            stream.validate(stream.StreamConfig(target="127.0.0.1:862", **kw))
    with pytest.raises(ValueError):
        stream.validate(stream.StreamConfig(target="127.0.0.1:99999"))


# ---------------------------------------------------------------- CLI and faults

def test_cli_json_has_every_design_key(real_reflector):
    host, port = real_reflector.address
    r = run_cli("probe", "stream", f"{host}:{port}", "--duration", "0.6", "--calls", "2", "--json", timeout=60)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)                         # exactly one JSON object on stdout
    assert DESIGN_KEYS <= set(d)
    assert set(d["ipdv_ms"]) >= {"up", "down", "rtt"} and set(d["ipdv_ms"]["up"]) == {"mean", "p50", "p95", "max"}
    assert set(d["sender"]["lateness_ms"]) >= {"p50", "p99"}
    assert d["calls"] == 2 and d["partial"] is False and d["errors"] == []


def test_cli_bad_input_exits_2():
    # (the other argument checks are unit-tested in test_bad_arguments_raise_value_error)
    for args in (["127.0.0.1:99999"], ["127.0.0.1:862", "--codec", "nope"],
                 ["127.0.0.1:862", "--key-file", "/nonexistent/key"]):
        r = run_cli("probe", "stream", *args, timeout=30)
        assert r.returncode == 2, (args, r.stderr)
        assert "Traceback" not in r.stderr and r.stderr.strip()


def _closed_udp_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_cli_reflector_not_running_exits_3_quickly():
    t = time.monotonic()
    r = run_cli("probe", "stream", f"127.0.0.1:{_closed_udp_port()}", "--duration", "20", "--timeout", "1",
                "--json", timeout=60)
    assert time.monotonic() - t < 1 + 6
    assert r.returncode == 3 and "no STAMP reflector" in r.stderr and "Traceback" not in r.stderr
    d = json.loads(r.stdout)
    assert d["measured"] is False and d["errors"] and d["packets"]["received"] == 0


def test_cli_silent_target_exits_3_within_timeout():
    # a bound socket that never answers: no ICMP error, just silence (filtered / wrong key / down)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        t = time.monotonic()
        r = run_cli("probe", "stream", "127.0.0.1:%d" % sink.getsockname()[1], "--duration", "20",
                    "--timeout", "1.5", "--json", timeout=60)
    assert time.monotonic() - t < 1.5 + 6
    assert r.returncode == 3 and "no reply" in json.loads(r.stdout)["errors"][0]


def test_cli_reflector_killed_mid_test_gives_partial_result_and_exit_3():
    from tests.test_reflector import _wait_answering

    port = _closed_udp_port()
    refl = subprocess.Popen([sys.executable, "-m", "harness", "reflector", "--listen", f"127.0.0.1:{port}",
                             "--no-tcp"], stderr=subprocess.DEVNULL)
    probe = None
    try:
        _wait_answering(("127.0.0.1", port), refl)
        probe = subprocess.Popen([sys.executable, "-m", "harness", "probe", "stream", f"127.0.0.1:{port}",
                                  "--duration", "20", "--timeout", "1", "--json", "-v"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # kill the reflector once the probe reports replies (progress lines on stderr)
        seen = []
        for line in probe.stderr:
            seen.append(line)
            m = re.search(r"(\d+)/\d+ replies", line)
            if m and int(m.group(1)) > 20:
                break
        refl.kill()
        t = time.monotonic()
        out, errtext = probe.communicate(timeout=30)
        errtext = "".join(seen) + errtext
    finally:
        for p in (refl, probe):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    assert time.monotonic() - t < 1 + 6
    assert probe.returncode == 3, errtext
    d = json.loads(out)
    assert d["partial"] is True and d["measured"] is True and d["packets"]["received"] > 20
    assert any("stopped answering" in e for e in d["errors"])
    assert "Traceback" not in errtext


def test_ipv6_and_source_binding():
    try:
        r6 = StampReflector("[::1]:0").start()
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback: {exc}")
    try:
        res = run_stream("[::1]:%d" % r6.address[1], duration_s=0.5)
        assert res.measured and res.loss_pct["total"] == 0 and res.target.startswith("[::1]:")
        assert res.dscp["received"] == 46                       # IPV6_RECVTCLASS at the reflector
    finally:
        r6.stop()
    logs = []
    r4 = StampReflector("127.0.0.1:0", on_session_end=logs.append).start()
    try:
        res = run_stream("127.0.0.1:%d" % r4.address[1], duration_s=0.5, source="127.0.0.2")
        assert res.measured
    finally:
        r4.stop()
    assert logs and all(line.startswith("session 127.0.0.2:") for line in logs)


def test_cli_profile_circuit_and_thresholds(real_reflector, tmp_path):
    # the circuit's reflector and the profile's thresholds drive the run and the exit code
    host, port = real_reflector.address
    base = f"""site: Loopback
planned:
  calls: 2
  codec: g711
  ptime_ms: 20
circuits:
  - name: old
    role: old
    down_mbps: 100
    up_mbps: 20
    reflector: {host}:{port}
  - name: new
    role: new
    down_mbps: 200
    up_mbps: 50
    reflector: 192.0.2.1:862
cutover:
  parallel_run_start: 2026-11-01
  checklist:
    - id: porting
      title: Numbers ported
"""
    ok = tmp_path / "ok.yaml"
    ok.write_text(base)
    r = run_cli("probe", "stream", "--profile", str(ok), "--circuit", "old", "--duration", "0.6", "--json",
                timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["target"] == f"{host}:{port}"
    strict = tmp_path / "strict.yaml"
    strict.write_text(base + "thresholds:\n  mos_min: 4.45\n")       # above the 4.37 a perfect path scores
    r = run_cli("probe", "stream", "--profile", str(strict), "--circuit", "old", "--duration", "0.6", timeout=60)
    assert r.returncode == 1 and "MOS 4.37 < 4.45" in r.stdout
    r = run_cli("probe", "stream", "--profile", str(ok), "--circuit", "nope", timeout=60)
    assert r.returncode == 2 and "no circuit 'nope'" in r.stderr


def test_cli_sigint_reports_what_was_measured(real_reflector):
    host, port = real_reflector.address
    probe = subprocess.Popen([sys.executable, "-m", "harness", "probe", "stream", f"{host}:{port}",
                              "--duration", "30", "--json", "-v"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in probe.stderr:
            m = re.search(r"(\d+)/\d+ replies", line)
            if m and int(m.group(1)) > 10:
                break
        probe.send_signal(signal.SIGINT)
        out, errtext = probe.communicate(timeout=20)
    finally:
        if probe.poll() is None:
            probe.kill()
            probe.wait()
    assert probe.returncode == 3 and "Traceback" not in errtext
    d = json.loads(out)
    assert d["partial"] is True and d["packets"]["received"] > 10 and "stopped early" in d["errors"]


def test_one_engine_runs_twice_at_once(scripted):
    # issue #14: every per-run figure lives on the run, so two runs of one Engine
    # overlap without mixing: the second starts 0.3 s later; a shared schedule or
    # clock mapping would show as ~300 ms of lateness or RTT in one of them.
    from probes.engine.core import Engine, EngineConfig
    r = scripted(drop_up=lambda s: s % 10 == 0)
    eng = Engine(EngineConfig(target=r.target, timeout_s=2.0))
    before = dict(vars(eng))
    out: dict = {}

    def go(name, calls):
        out[name] = eng.run(calls=calls, duration_s=2.0)

    a = threading.Thread(target=go, args=("a", 1))
    b = threading.Thread(target=go, args=("b", 3))
    a.start()
    time.sleep(0.3)
    b.start()
    a.join(15)
    b.join(15)
    for name, calls in (("a", 1), ("b", 3)):
        res = out[name]
        assert res.measured and res.direction_split is True
        assert res.packets == {"sent": 100 * calls, "reflected": 90 * calls, "received": 90 * calls}
        assert abs(res.sender["lateness_ms"]["p50"]) < 50
        assert 0 < res.rtt_ms["mean"] < 50
    assert vars(eng) == before          # the runs left nothing on the engine
