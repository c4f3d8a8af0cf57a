"""The latency probe: ICMP via ping3, the UDP (STAMP) and TCP fallbacks, ping3's
failure modes, and an unprivileged run that must fall back on its own."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys

import pytest

from probes import latency
from probes.latency import LatencyConfig
from probes.reflector import StampReflector
from tests.conftest import ROOT, needs_root, run_cli
from tests.privilege import NOBODY_GID, as_nobody
from tests.lab import Impairment, impairment_relay


@pytest.fixture
def reflector():
    r = StampReflector("127.0.0.1:0").start()
    yield r
    r.stop()


def cfg(target, **kw):
    kw.setdefault("count", 4)
    kw.setdefault("interval_s", 0.02)
    kw.setdefault("timeout_s", 0.5)
    return LatencyConfig(target=target, **kw)


@needs_root
def test_icmp_on_loopback():
    res = latency.run(cfg("127.0.0.1"))
    assert res.method == "icmp" and res.received == 4 and res.loss_pct == 0
    assert 0 < res.rtt_ms["p50"] < 5 and res.fallback_reason is None


def test_udp_stamp_method_measures_the_configured_delay(reflector):
    # 20 ms each way through the relay: RTT = 40 ms + the relay's own sub-ms overhead
    host, port = reflector.address
    with impairment_relay(upstream=(host, port), up=Impairment(delay_ms=20), down=Impairment(delay_ms=20),
                          max_seconds=30) as relay:
        res = latency.run(cfg("%s:%d" % relay.address, method="udp", count=8))
    assert res.method == "udp" and res.received == 8
    assert res.rtt_ms["p50"] == pytest.approx(40.0, abs=1.5)


def test_tcp_method_times_the_handshake():
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(16)
        res = latency.run(cfg("127.0.0.1:%d" % srv.getsockname()[1], method="tcp"))
    assert res.method == "tcp" and res.received == 4 and res.rtt_ms["max"] < 50


# ---------------------------------------------------------------- ping3's failure modes

@pytest.mark.parametrize("behaviour, cause", [
    (lambda *a, **k: None, "timed out"),                                   # timeout
    (lambda *a, **k: False, "ICMP error"),                                 # ping3's error value
    (lambda *a, **k: (_ for _ in ()).throw(PermissionError(1, "x")), "needs root"),
    (lambda *a, **k: (_ for _ in ()).throw(OSError(errno.ENETUNREACH, "Network is unreachable")),
     "unreachable"),
])
def test_icmp_failures_fall_back_to_stamp_with_the_cause(monkeypatch, reflector, behaviour, cause):
    import ping3

    monkeypatch.setattr(ping3, "ping", behaviour)
    host, port = reflector.address
    res = latency.run(cfg(f"{host}:{port}", count=5))
    assert res.method == "udp" and res.received == 5 and res.measured
    assert res.fallback_reason.startswith("icmp:") and cause in res.fallback_reason


def test_forced_icmp_that_times_out_is_unmeasured_with_a_cause(monkeypatch):
    import ping3

    monkeypatch.setattr(ping3, "ping", lambda *a, **k: None)
    res = latency.run(cfg("127.0.0.1", method="icmp", count=2))
    assert not res.measured and res.method == "icmp" and res.loss_pct == 100
    assert "no reply" in res.errors[0]


def test_everything_fails_cleanly(monkeypatch):
    import ping3

    monkeypatch.setattr(ping3, "ping", lambda *a, **k: False)
    # nothing listens on UDP or TCP at this port: the TCP RST still measures a round trip
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = latency.run(cfg(f"127.0.0.1:{port}", count=3))
    assert res.method == "tcp" and res.measured
    assert "icmp:" in res.fallback_reason and "udp:" in res.fallback_reason


def test_bad_arguments():
    for kw in ({"method": "smoke"}, {"count": 0}, {"timeout_s": 0}):
        with pytest.raises(ValueError):
            latency.validate(cfg("127.0.0.1", **kw))
    with pytest.raises(ValueError):
        latency.validate(cfg("127.0.0.1:0"))


# ---------------------------------------------------------------- CLI

def test_cli_unresolvable_and_bad_input():
    r = run_cli("probe", "latency", "no-such-host.invalid", "--count", "1", "--json", timeout=60)
    assert r.returncode == 3 and "cannot resolve" in r.stderr and "Traceback" not in r.stderr
    assert json.loads(r.stdout)["measured"] is False
    r = run_cli("probe", "latency", "300.1.1.1:x", timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_cli_unprivileged_user_falls_back_to_udp(reflector):
    # a real unprivileged run: no CAP_NET_RAW, and ping_group_range as this machine has it
    with open("/proc/sys/net/ipv4/ping_group_range") as fh:
        lo, hi = map(int, fh.read().split())
    if lo <= NOBODY_GID <= hi:
        pytest.skip("unprivileged ICMP sockets are allowed for nobody here; nothing to fall back from")
    host, port = reflector.address
    env = dict(os.environ, HOME="/tmp", PYTHONDONTWRITEBYTECODE="1")
    r = subprocess.run(as_nobody([sys.executable, "-m", "harness", "probe", "latency", f"{host}:{port}",
                                  "--count", "4", "--interval", "0.05", "--json"]),
                       capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["method"] == "udp" and d["received"] == 4
    assert "ICMP needs root" in d["fallback_reason"]
