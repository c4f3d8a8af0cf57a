"""Probes say, typed, when their error is ours (issue #13, "a fault of ours is
never reported as the carrier's").

Each probe's result has ``gaps``: the subset of ``errors`` whose cause is on
our side (probes.result.local_error / add_error). harness.suite.probe_cause
reads that key, not the wording. Every case here is a real fault on this
machine: a source address that is not on it (192.0.2.1, TEST-NET-1, RFC 5737:
bind() fails with EADDRNOTAVAIL), a stop requested, a missing module; and a
real far end that does not answer: a loopback port nobody listens on, a
reflector stopped.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import threading

import pytest

from harness.suite import probe_cause
from harness.verdicts import GAP, NETWORK
from probes import bandwidth, capacity, failover, latency, sip, stream
from probes.reflector import StampReflector
from probes.result import add_error, is_local, local_error
from tests.conftest import ROOT, needs_root
from tests.harness_procs import closed_udp_port, demo_profile

NOT_HERE = "192.0.2.1"       # TEST-NET-1: on no interface of this machine


def closed_tcp_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def assert_gap(d: dict) -> None:
    assert d["gaps"], d["errors"]
    assert set(d["gaps"]) <= set(d["errors"])           # gaps are a subset of errors
    assert probe_cause(d) == GAP


def assert_network(d: dict) -> None:
    assert d["errors"] and d["gaps"] == [], (d["errors"], d["gaps"])
    assert probe_cause(d) == NETWORK


@pytest.fixture
def reflector():
    r = StampReflector("127.0.0.1:0").start()
    yield r
    r.stop()


# ---------------------------------------------------------------- the mechanism

def test_is_local_by_errno_and_type():
    """Our side cannot send: EADDRNOTAVAIL, ENETDOWN, EPERM...; what the path or
    the far end answered is not ours: ENETUNREACH, EHOSTUNREACH, ECONNREFUSED."""
    assert is_local(OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address"))
    assert is_local(OSError(errno.ENETDOWN, "Network is down"))
    assert is_local(PermissionError(errno.EPERM, "Operation not permitted"))
    for far in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ECONNREFUSED, errno.ETIMEDOUT):
        assert not is_local(OSError(far, os.strerror(far)))
    assert not is_local(ConnectionRefusedError(errno.ECONNREFUSED, "refused"))
    assert not is_local(ValueError("not an OSError"))


def test_local_error_and_add_error_fill_errors_and_gaps():
    r = stream.StreamResult(target="t", codec="g711", ptime_ms=20, calls=1, duration_s=1.0, payload_b=44,
                            offered_kbps=0.0)
    local_error(r, "stopped early")
    add_error(r, OSError(errno.EHOSTUNREACH, "No route to host"), "no route")
    add_error(r, OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address"))
    assert r.errors == ["stopped early", "no route", "[Errno 99] Cannot assign requested address"]
    assert r.gaps == ["stopped early", "[Errno 99] Cannot assign requested address"]
    assert r.to_dict()["gaps"] == r.gaps


def test_typed_gaps_win_over_words():
    """The wording no longer decides: an error that sounds local with gaps []
    is the network's; a gap whose text has none of the old words is a gap."""
    assert probe_cause({"errors": ["permission denied by the far end's firewall"], "gaps": []}) == NETWORK
    assert probe_cause({"errors": ["x", "quota of 3 runs used up"], "gaps": ["quota of 3 runs used up"]}) == GAP
    # only a raw stored before the change (no "gaps" key) is read by its words
    assert probe_cause({"errors": ["ICMP needs root"]}) == GAP
    assert probe_cause({"errors": ["no reply within 2 s"]}) == NETWORK


# ---------------------------------------------------------------- stream (engine: stream, capacity, failover)

def test_stream_from_a_source_not_here_is_a_gap():
    d = stream.run(stream.StreamConfig(target=f"127.0.0.1:{closed_udp_port()}", source=NOT_HERE,
                                       duration_s=1.0, timeout_s=1.0)).to_dict()
    assert d["measured"] is False and not d["packets"].get("sent")
    assert_gap(d)
    assert "cannot assign requested address" in d["gaps"][0].lower()


def test_stream_to_a_closed_port_is_the_network():
    d = stream.run(stream.StreamConfig(target=f"127.0.0.1:{closed_udp_port()}", duration_s=1.0,
                                       timeout_s=1.0)).to_dict()
    assert d["measured"] is False and d["packets"]["sent"] > 0 and d["packets"]["received"] == 0
    assert_network(d)


def test_stream_to_a_reflector_that_stops_is_the_network(reflector):
    """The reflector stops 1 s into a 4 s run: partial, and the silence is the path's."""
    threading.Timer(1.0, reflector.stop).start()
    d = stream.run(stream.StreamConfig(target=f"127.0.0.1:{reflector.address[1]}", duration_s=4.0,
                                       timeout_s=1.0)).to_dict()
    assert d["measured"] is True and d["partial"] is True
    assert any("stopped answering" in e for e in d["errors"]), d["errors"]
    assert_network(d)


def test_stream_stopped_on_request_is_a_gap(reflector):
    stop = threading.Event()
    threading.Timer(1.0, stop.set).start()
    d = stream.run(stream.StreamConfig(target=f"127.0.0.1:{reflector.address[1]}", duration_s=6.0,
                                       timeout_s=1.0), stop=stop).to_dict()
    assert d["measured"] is True and d["partial"] is True
    assert d["gaps"] == ["stopped early"]
    assert probe_cause(d) == GAP


def test_capacity_from_a_source_not_here_is_a_gap_closed_port_the_network():
    port = closed_udp_port()
    common = dict(target=f"127.0.0.1:{port}", planned_calls=2, max_calls=4, preset="quick", step_s=1.0,
                  settle_s=0.0, timeout_s=1.0)
    gap = capacity.run(capacity.CapacityConfig(source=NOT_HERE, **common)).to_dict()
    assert gap["measured"] is False and gap["max_calls"] is None
    assert_gap(gap)
    net = capacity.run(capacity.CapacityConfig(**common)).to_dict()
    assert net["measured"] is False
    assert_network(net)


def test_failover_carries_the_engines_gaps():
    port = closed_udp_port()
    gap = failover.run(failover.FailoverConfig(target=f"127.0.0.1:{port}", calls=1, duration_s=5.0,
                                               timeout_s=1.0, source=NOT_HERE)).to_dict()
    assert gap["measured"] is False
    assert_gap(gap)
    net = failover.run(failover.FailoverConfig(target=f"127.0.0.1:{port}", calls=1, duration_s=5.0,
                                               timeout_s=1.0)).to_dict()
    assert net["measured"] is False
    assert_network(net)


# ---------------------------------------------------------------- latency

def test_latency_udp_from_a_source_not_here_is_a_gap():
    d = latency.run(latency.LatencyConfig(target=f"127.0.0.1:{closed_udp_port()}", method="udp", count=2,
                                          interval_s=0, timeout_s=0.5, source=NOT_HERE)).to_dict()
    assert d["measured"] is False
    assert_gap(d)


def test_latency_auto_when_every_method_fails_here_is_a_gap():
    """ICMP, UDP and TCP all fail to bind the source: nothing left the machine."""
    d = latency.run(latency.LatencyConfig(target="127.0.0.1", count=2, interval_s=0, timeout_s=0.5,
                                          source=NOT_HERE)).to_dict()
    assert d["measured"] is False and d["received"] == 0
    assert_gap(d)


def test_latency_udp_to_a_closed_port_is_the_network():
    port = closed_udp_port()
    d = latency.run(latency.LatencyConfig(target=f"127.0.0.1:{port}", method="udp", count=3, interval_s=0,
                                          timeout_s=0.5)).to_dict()
    assert d["measured"] is False and d["sent"] >= 1
    assert any(f"UDP port {port} unreachable" in e for e in d["errors"]), d["errors"]
    assert_network(d)


def test_latency_stopped_on_request_is_a_gap(reflector):
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    d = latency.run(latency.LatencyConfig(target=f"127.0.0.1:{reflector.address[1]}", method="udp", count=50,
                                          interval_s=0.1, timeout_s=1.0), stop=stop).to_dict()
    assert d["measured"] is True and d["partial"] is True and 0 < d["sent"] < 50
    assert d["gaps"] == ["stopped before the last sample"]
    assert probe_cause(d) == GAP


# ---------------------------------------------------------------- bandwidth

def test_bandwidth_from_a_source_not_here_is_a_gap_closed_port_the_network():
    port = closed_tcp_port()
    common = dict(target=f"127.0.0.1:{port}", duration_s=1.0, streams=1, omit_s=0, idle_s=0, latency=False,
                  timeout_s=2.0)
    gap = bandwidth.run(bandwidth.BandwidthConfig(source=NOT_HERE, **common)).to_dict()
    assert gap["measured"] is False
    assert_gap(gap)
    net = bandwidth.run(bandwidth.BandwidthConfig(**common)).to_dict()
    assert net["measured"] is False
    assert any("refused" in e.lower() for e in net["errors"]), net["errors"]
    assert_network(net)


def test_bandwidth_without_speedtest_cli_is_a_gap(monkeypatch):
    """speedtest-cli not importable (a None in sys.modules makes `import` fail
    as for a module that is not installed): a missing tool is ours."""
    monkeypatch.setitem(sys.modules, "speedtest", None)
    d = bandwidth.run(bandwidth.BandwidthConfig(backend="mini", mini_url=f"http://127.0.0.1:{closed_tcp_port()}/",
                                                duration_s=1.0, streams=1, latency=False,
                                                timeout_s=2.0)).to_dict()
    assert d["measured"] is False
    assert_gap(d)
    assert "speedtest" in d["gaps"][0]


# ---------------------------------------------------------------- sip

def test_sip_from_a_source_not_here_is_a_gap_closed_port_the_network():
    port = closed_udp_port()
    gap = sip.run(sip.SipConfig(uri=f"sip:127.0.0.1:{port}", transport="udp", timeout_s=1.0,
                                source=NOT_HERE)).to_dict()
    assert gap["measured"] is False
    assert_gap(gap)
    net = sip.run(sip.SipConfig(uri=f"sip:127.0.0.1:{port}", transport="udp", timeout_s=1.0)).to_dict()
    assert net["measured"] is False
    assert any("port unreachable" in e for e in net["errors"]), net["errors"]
    assert_network(net)


# ---------------------------------------------------------------- path (needs a real lack of CAP_NET_RAW)

@needs_root
def test_path_without_raw_sockets_is_a_gap():
    """Root without CAP_NET_RAW (setpriv drops it): the probe cannot trace."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) not installed")
    env = dict(os.environ)
    env.pop("CUTOVER_DEBUG", None)
    r = subprocess.run(["setpriv", "--bounding-set=-net_raw", "--inh-caps=-net_raw", sys.executable, "-m",
                        "harness", "probe", "path", "127.0.0.1", "--json"],
                       capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert r.returncode == 3, r.stderr
    d = json.loads(r.stdout)
    assert d["measured"] is False
    assert_gap(d)


# ---------------------------------------------------------------- through cutover check

def test_check_from_a_source_not_here_is_gaps_no_outage(tmp_path):
    """The demo profile's `new` circuit sends from an address this machine does
    not have: every step of ours is a measurement gap, nothing the network's,
    and the stored history opens no outage."""
    from harness import history
    from harness.profile import load_profile
    from harness.store import Store
    from tests.conftest import run_cli

    prof = demo_profile(tmp_path / "demo.yaml", closed_udp_port(), closed_udp_port())
    prof.write_text(prof.read_text().replace("    source: 127.0.0.3", f"    source: {NOT_HERE}"))
    db = tmp_path / "h.sqlite"
    r = run_cli("check", str(prof), "--circuit", "new", "--step", "latency", "--step", "stream", "--step",
                "capacity", "--quick", "--db", str(db), "--json", "--quiet", timeout=240)
    out = json.loads(r.stdout)
    bad = [c for c in out["circuits"]["new"]["checks"] if c["status"] != "pass"]
    # latency runs its probe (ICMP, UDP, TCP all fail to bind: its gaps); the
    # reflector's steps stop at the preflight, whose bind fails the same way
    assert {c["id"].split(".")[0] for c in bad} >= {"latency", "stream", "capacity"}, bad
    assert all(c["cause"] == "measurement_gap" for c in bad), bad
    assert any("192.0.2.1" in c["reason"] for c in bad if c["id"].startswith("stream")), bad
    profile = load_profile(prof)
    with Store(db) as store:
        a = history.analyze(history.load_runs(store, profile.site), profile)
    assert a.all_outages() == []
